"""Writing one simulation into a cache directory: validated against the scenario, written atomically by its format,
described by the manifest entry it returns.

Part of step 2 of the pipeline (scenarios -> manager (cache) -> dataset -> trainer). The primitive under both
`cache.Cache.write_all` (saved, imported and migrated sims) and `generation` (simulated sims, also on remote workers).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from phiml import math
from phiml.math import Tensor

from .formats import get_format
from .formats.base import shape_spec
from .keys import hash_payload, key_payload
from .manifest import sim_file_name
from .scenarios import Scenario


def write_sim(
    directory: Path, scenario: Scenario, fmt: str, sim_index: int, field_data: dict, origin: str, stage: bool = False
):
    """Validates one simulation against `scenario` and writes it atomically; returns its manifest entry, or with
    `stage` the entry and the complete temporary file, not yet renamed to `sim_file_name(sim_index)`."""
    fields = validate_fields(scenario, sim_index, field_data)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    storage = get_format(fmt)
    payload = key_payload(scenario, fmt)
    metadata = {
        **scenario.metadata(sim_index),
        'cache_key': hash_payload(payload),
        'key_payload': payload,
        'origin': origin,
    }
    path = directory / sim_file_name(sim_index, storage.suffix)
    entries, staged = storage.stage(path, fields, metadata, static={k for k, s in scenario.fields.items() if s.static})
    entry = {'file': path.name, 'bytes': staged.stat().st_size, 'origin': origin, 'fields': entries}
    if stage:
        return entry, staged
    os.replace(staged, path)
    return entry


def validate_fields(scenario: Scenario, sim_index: int, field_data: dict) -> dict[str, Tensor]:
    """Checks fields against the scenario (set, dims, sizes, item names, dtype, finite values), listing every problem.

    Returns:
        The fields in canonical dim order `scenario.field_shape(name)`.
    """
    expected, got = set(scenario.fields), set(field_data)
    if expected != got:
        raise ValueError(
            f"Sim {sim_index}: fields {sorted(got)} do not match scenario '{scenario.name}' fields {sorted(expected)}."
        )
    problems, out = [], {}
    for name, t in field_data.items():
        want = scenario.field_shape(name)
        if not isinstance(t, Tensor) or set(t.shape.names) != set(want.names):
            problems.append(
                f"field '{name}' must be a Tensor with dims {list(want.names)}, got {getattr(t, 'shape', type(t))}"
            )
            continue
        shape = t.shape.only(want.names, reorder=True)
        if shape != want:
            problems.append(
                f"field '{name}' has shape {shape_spec(shape)}; scenario '{scenario.name}' needs {shape_spec(want)}"
            )
            continue
        dtype = dtype_name(t)
        array = np.ascontiguousarray(
            t.numpy(want.names)
        )  # PhiML casts to its current precision here: check the tensor's own dtype
        if dtype != scenario.dtype or str(array.dtype) != scenario.dtype:
            problems.append(f"field '{name}' has dtype {dtype}; scenario '{scenario.name}' stores {scenario.dtype}")
        elif not np.isfinite(array).all():
            problems.append(
                f"field '{name}' contains NaN or Inf; refusing to cache it. Reduce dt or check the scenario"
            )
        out[name] = math.tensor(array, want)
    if problems:
        raise ValueError(
            f"Sim {sim_index} does not fit scenario '{scenario.name}' (parameters {scenario.params()}):\n  "
            + '\n  '.join(problems)
        )
    return out


def dtype_name(t: Tensor) -> str:
    """NumPy-style name of a tensor's own dtype, e.g. `'float32'`."""
    kind = {float: 'float', int: 'int', complex: 'complex', bool: 'bool'}[t.dtype.kind]
    return kind if kind == 'bool' else f'{kind}{t.dtype.bits}'


def sim_index(i) -> int:
    """`i` as a sim index (or count): an integer >= 0, else `ValueError` naming it."""
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0:
        raise ValueError(f"Sim indices and counts must be integers >= 0, got {i!r}")
    return int(i)
