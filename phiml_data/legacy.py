"""Migration of legacy torch caches into the PhiML-native cache.

The legacy pipeline saved one file per simulation with `torch.save`:
`{'tensor_data': {field: torch.Tensor[C, T, H, W]}, 'metadata': {...}}`, where `C` is the vector component
(x, y) or 1 for scalars, `T` time, `H` the `x` axis and `W` the `y` axis (1D data: `[C, T, X]`).

Torch is imported only inside `migrate_legacy`, and files are read with `torch.load(..., weights_only=True)`, which
refuses to run code stored in a file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from phiml import math
from phiml.math import Tensor

from .cache import Cache, cache_of
from .importers import timing_problems


def legacy_to_phiml(array: np.ndarray, spatial_dims: tuple[str, ...], vector: bool, static: bool) -> Tensor:
    """Names the axes of one legacy `[C, T, H, W]` array.

    Args:
        array: NumPy array `[C, T, *spatial]`.
        spatial_dims: Names of the spatial axes in order, e.g. `('x', 'y')`.
        vector: Whether `C` holds vector components (named after `spatial_dims`); else `C` must be 1.
        static: Static fields keep only the first frame and have no `time` dim.

    Returns:
        `Tensor (timeᵇ, xˢ, [yˢ], [vectorᶜ])`, or without `time` if `static`.
    """
    if array.ndim != 2 + len(spatial_dims):
        raise ValueError(f"Legacy array has shape {array.shape}; expected [C, T, {', '.join(spatial_dims)}]")
    components = array.shape[0]
    if vector and components != len(spatial_dims):
        raise ValueError(
            f"Legacy vector field has C={components}; expected {len(spatial_dims)} components ({','.join(spatial_dims)})"
        )
    if not vector and components != 1:
        raise ValueError(f"Legacy scalar field has C={components}; expected C=1")
    values = np.moveaxis(array, 0, -1)  # [T, *spatial, C]
    shape = math.batch(time=values.shape[0]) & math.spatial(**dict(zip(spatial_dims, values.shape[1:-1])))
    if vector:
        t = math.tensor(values, shape & math.channel(vector=','.join(spatial_dims)))
    else:
        t = math.tensor(values[..., 0], shape)
    return t.time[0] if static else t


def migrate_legacy(files, cache: Cache, progress: bool = True) -> list[int]:
    """Converts legacy `torch.save` caches into `cache` (a `Cache` or `DataManager`), validated against its scenario.

    The sim index comes from `metadata['sim_index']` if present, else from the file name (`sim_000003.pt` -> 3).
    Each file must match the scenario: fields, frames (`steps + 1`), resolution, dtype and, where its metadata
    records one, dt. A mismatch is refused with every difference and the file's name; nothing is written for it.
    Scenarios with staggered fields are refused: legacy files hold those sampled at cell centres, which cannot give
    back the exact face values the cache stores.

    Args:
        files: A folder (all `*.pt` / `*.pth` in it) or a list of files.
        cache: Target cache; its scenario says which fields are vectors and which are static.
        progress: Show a progress bar.

    Returns:
        Sim indices written.
    """
    cache = cache_of(cache)
    import torch  # only here: the data layer does not depend on torch
    from tqdm.auto import tqdm

    files = _legacy_files(files)
    written = []
    for path in tqdm(files, desc='migrating', unit='file', disable=not progress):
        try:
            legacy = torch.load(path, map_location='cpu', weights_only=True)  # refuses pickled code
        except Exception as err:
            raise ValueError(
                f"Legacy file {path} cannot be loaded safely (torch.load with weights_only=True: {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''})"
            ) from None
        try:
            data, metadata = legacy['tensor_data'], legacy.get('metadata', {})
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(
                f"Legacy file {path} is not a legacy cache: expected {{'tensor_data': {{...}}, 'metadata': {{...}}}} ({err})"
            ) from None
        index = int(metadata.get('sim_index', find_sim_index(path.name)))
        try:
            cache.write(index, _legacy_fields(data, metadata, cache.scenario), origin='migrated')
        except ValueError as err:
            raise ValueError(f"Legacy file {path} refused: {err}") from None
        written.append(index)
    return written


def _legacy_fields(data: dict, metadata: dict, scenario) -> dict[str, Tensor]:
    """Named fields of one legacy file, after checking its fields and recorded dt against `scenario`."""
    problems = []
    missing = [k for k in scenario.fields if k not in data]
    if missing:
        problems.append(
            f"no field(s) {missing} (it has {sorted(data)}); scenario '{scenario.name}' needs {sorted(scenario.fields)}"
        )
    if 'dt' in metadata:  # frames and resolution are checked with the array shapes when the sim is written
        problems += timing_problems(scenario, None, metadata['dt'])
    fields = {}
    for name, spec in scenario.fields.items():
        if name in data:
            try:
                fields[name] = legacy_to_phiml(data[name].numpy(), scenario.spatial_dims, spec.vector, spec.static)
            except ValueError as err:
                problems.append(f"field '{name}': {err}")
            if spec.grid == 'staggered':
                problems.append(
                    f"field '{name}' is staggered: a legacy [C, T, H, W] file holds it sampled at cell centres, from "
                    f"which the face values this cache stores cannot be restored exactly; regenerate these sims "
                    f"(`phiml-data generate`) instead"
                )
    if problems:
        raise ValueError('\n  ' + '\n  '.join(problems))
    return fields


def _legacy_files(files) -> list[Path]:
    if isinstance(files, (str, Path)) and Path(files).is_dir():
        found = sorted(p for p in Path(files).iterdir() if p.suffix in ('.pt', '.pth'))
        if not found:
            raise FileNotFoundError(f"No legacy cache files (*.pt, *.pth) in {files}")
        return found
    files = [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files]
    for f in files:
        if not f.exists():
            raise FileNotFoundError(f"Legacy cache file {f} does not exist")
    return files


def phiml_to_legacy(t: Tensor, spatial_dims: tuple[str, ...]) -> np.ndarray:
    """The legacy `[C, T, H, W]` layout of a cached field (for comparisons and tests).

    Args:
        t: `Tensor (timeᵇ, xˢ, [yˢ], [vectorᶜ])`; static fields (no `time`) get `T=1`.
        spatial_dims: Spatial dim names in legacy axis order.
    """
    t = t if 'time' in t.shape else math.expand(t, math.batch(time=1))
    t = t if 'vector' in t.shape else math.expand(t, math.channel(vector='c'))
    return t.numpy(['vector', 'time', *spatial_dims])


def find_sim_index(name: str) -> int:
    """Simulation index from a file or folder name such as `sim_000012.pt` or `sim_12`."""
    match = re.search(r'(\d+)(?!.*\d)', Path(name).name)
    if not match:
        raise ValueError(f"Cannot read a simulation index from '{name}'; expected a name like 'sim_000012'.")
    return int(match.group(1))
