"""Importing simulations written elsewhere, validated against the scenario before anything is cached.

A PhiFlow `Scene` (one `.npz` per field per frame, written by `Scene.write`) is checked field by field against
the scenario: grid type (centred or staggered), boundary, bounds, resolution, frame count, dt and dtype. Every
mismatch is listed in one error. Alternatively `scenario_from_scene` builds the scenario from the scene's own
description, so that resolution, domain size, steps and dt come from the scene.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from phiml import math

from .cache import Cache, cache_of
from .layouts import get_layout
from .layouts.base import shortest32
from .scenarios import BOUNDARIES, Scenario, field_values
from .writing import dtype_name


def _open_scene(scene_path):
    from phi.field import Scene

    if not Path(scene_path).is_dir():
        raise FileNotFoundError(f"Scene directory {scene_path} does not exist")
    return Scene.at(str(scene_path))


def scene_description(scene_path) -> dict:
    """What a Scene says about itself: `{'frames', 'dt', 'fields': {name: {'grid', 'boundary', 'bounds', 'resolution', 'dtype'}}}`."""
    scene = _open_scene(scene_path)
    frames = scene.frames
    fields = {}
    for name in scene.fieldnames:
        f = scene.read(name, frame=frames[0])
        boundary = next((k for k, v in BOUNDARIES.items() if f.extrapolation == v), str(f.extrapolation))
        fields[name] = {
            'grid': 'staggered' if f.is_staggered else 'centered',
            'boundary': boundary,
            'bounds': {str(d): [float(f.bounds.lower[d]), float(f.bounds.upper[d])] for d in f.resolution.names},
            'resolution': {str(d): int(n) for d, n in zip(f.resolution.names, f.resolution.sizes)},
            'dtype': dtype_name(field_values(f)),
        }
    return {'frames': len(frames), 'dt': scene.properties.get('dt'), 'fields': fields}


def _same_bounds(found: dict, expected: dict) -> bool:
    """Bounds `{dim: [lower, upper]}` equal up to single precision (scenes and benchmark files store float32)."""
    return found.keys() == expected.keys() and all(
        np.allclose(found[k], expected[k], rtol=1e-6, atol=1e-6 * max(map(abs, expected[k]))) for k in expected
    )


def timing_problems(scenario: Scenario, frames: int | None, dt: float | None, rtol: float = 1e-9) -> list[str]:
    """Differences in frame count (skipped if `None`) and time step (`None`: unknown) from what `scenario` caches."""
    problems = []
    if frames is not None and frames != scenario.frames:
        problems.append(f"{frames} frames; scenario has steps={scenario.steps}, i.e. {scenario.frames} frames")
    if dt is None or abs(float(dt) - scenario.dt) > rtol * max(1.0, scenario.dt):
        problems.append(f"dt={dt}; scenario has dt={scenario.dt}")
    return problems


def scene_problems(scenario: Scenario, description: dict, dt: float = None) -> list[str]:
    """Every difference between a scene's description and what `scenario` caches."""
    scene_dt = description['dt'] if description['dt'] is not None else dt
    problems = timing_problems(scenario, description['frames'], scene_dt)
    if scene_dt is None:
        problems[-1] = "the scene records no dt (Scene.put_property('dt', ...)); pass dt=... to state it"
    missing = [k for k in scenario.fields if k not in description['fields']]
    if missing:
        problems.append(f"lacks field(s) {missing}; it has {sorted(description['fields'])}")
    bounds = {k: list(v) for k, v in scenario.bounds.items()}
    for name, spec in scenario.fields.items():
        d = description['fields'].get(name)
        if d is None:
            continue
        want = {
            'grid': spec.grid,
            'boundary': spec.boundary,
            'bounds': bounds,
            'resolution': scenario.grid_size,
            'dtype': scenario.dtype,
        }
        same = {k: _same_bounds(d[k], v) if k == 'bounds' else d[k] == v for k, v in want.items()}
        problems += [f"field '{name}': {k} {d[k]}; scenario has {v}" for k, v in want.items() if not same[k]]
    return problems


def import_scene(cache: Cache, scene_path, sim_index: int, dt: float = None) -> dict:
    """Validates a PhiFlow `Scene` against `cache.scenario` and caches it as sim `sim_index`.

    Static fields are read from the first frame; staggered fields are stored as the scenario stores them.

    Args:
        cache: The target `Cache` (or `DataManager`).
        scene_path: The scene directory.
        sim_index: Index of the sim in the cache.
        dt: Time step, if the scene records none (property `dt`).

    Returns:
        The manifest entry.

    Raises:
        ValueError: The scene differs from the scenario; the message lists every difference.
    """
    cache = cache_of(cache)
    scenario = cache.scenario
    problems = scene_problems(scenario, scene_description(scene_path), dt)
    if problems:
        raise ValueError(
            f"Scene {scene_path} does not match scenario '{scenario.name}' ({scenario.params()}):\n  "
            + '\n  '.join(problems)
            + "\nBuild the scenario from the scene instead: DataManager(cache_dir, scenario_from_scene(scene_path, ScenarioClass))."
        )
    scene = _open_scene(scene_path)
    frames = scene.frames
    data = {}
    for name, spec in scenario.fields.items():
        if spec.static:
            data[name] = field_values(scene.read(name, frame=frames[0]))
        else:
            data[name] = math.stack([field_values(scene.read(name, frame=f)) for f in frames], math.batch('time'))
    entry = cache.write(sim_index, data, origin='imported')
    return entry


def scenario_from_scene(scene_path, scenario: Scenario | type[Scenario], dt: float = None) -> Scenario:
    """`scenario` (a class or an instance) with resolution, domain size, steps and dt taken from a Scene.

    Grid types and boundaries come from the scenario class and are still checked on import.

    Raises:
        ValueError: The scene's domain cannot be expressed by the scenario (it starts away from 0 or is not a cube).
    """
    d = scene_description(scene_path)
    base = scenario() if isinstance(scenario, type) else scenario
    first = d['fields'][next(k for k in base.fields if k in d['fields'])]
    lower = {k: v[0] for k, v in first['bounds'].items()}
    lengths = {v[1] - v[0] for v in first['bounds'].values()}
    if any(lower.values()) or len(lengths) != 1:
        raise ValueError(
            f"Scene {scene_path} has bounds {first['bounds']}; scenario '{base.name}' needs a domain [0, L] of equal L along every axis"
        )
    step = d['dt'] if d['dt'] is not None else dt
    if step is None:
        raise ValueError(f"Scene {scene_path} records no dt; pass dt=...")
    return dataclasses.replace(
        base,
        resolution=tuple(first['resolution'][k] for k in base.spatial_dims),
        length=lengths.pop(),
        steps=d['frames'] - 1,
        dt=float(step),
    )


# --- public PDE benchmark files (PDEBench, The Well; one registered layout each in `phiml_data.layouts`) ---


def benchmark_description(path, layout: str, fields: dict = None) -> dict:
    """What a benchmark HDF5 file holds, in the terms `benchmark_problems` compares with a scenario.

    The file's structure is checked before anything is read from its datasets: every coordinate (and the time axis)
    uniformly spaced and increasing, every mapped dataset numeric with the trajectory, frame and spatial sizes its
    layout implies. Trajectories whose data were declared but never written (unallocated HDF5 chunks, which read as
    zeros) are listed in `unwritten`.

    Args:
        path: The HDF5 file.
        layout: A registered layout (`phiml_data.layouts.LAYOUTS`): `'pdebench'` or `'the_well'`.
        fields: `{our field: their dataset, or a list of datasets for the vector components}`; by default every field
            the file holds, under its own name.

    Returns:
        The layout's description (see `phiml_data.layouts.BenchmarkLayout`).

    Raises:
        ValueError: The file is not HDF5, lacks a part of the layout, or is malformed; names the file and every problem.
    """
    import h5py

    reader = get_layout(layout)
    try:
        f = h5py.File(path, 'r')
    except OSError as err:
        raise ValueError(f"{path} cannot be opened as an HDF5 file ({err})") from None
    with f:
        try:
            return {**reader.describe(f, path, fields), 'layout': layout}
        except (KeyError, TypeError, AttributeError, IndexError) as err:
            raise ValueError(f"{path} is not a readable {layout} file ({type(err).__name__}: {err})") from None


def benchmark_problems(scenario: Scenario, description: dict) -> list[str]:
    """Every difference between a benchmark file's description and what `scenario` caches, each on its own line."""
    problems = timing_problems(scenario, description['frames'], description['dt'], rtol=1e-6)  # float32 times
    if description['resolution'] != scenario.grid_size:
        problems.append(f"resolution {description['resolution']}; scenario has {scenario.grid_size}")
    if not _same_bounds(description['bounds'], {k: list(v) for k, v in scenario.bounds.items()}):
        problems.append(f"bounds {description['bounds']}; scenario has {dict(scenario.bounds)}")
    ours = scenario.sample_conventions()
    for d, convention in description['convention'].items():
        if convention != ours.get(d):
            c = description['coordinates'][d]
            problems.append(
                f"{d}: the file samples {len(c)} points from {float(c[0]):g} to {float(c[-1]):g}, both domain ends "
                f"included; the scenario stores cell averages at the cell centres, a different grid"
            )
    for name, (value, origin) in description['parameters'].items():
        ours = scenario.parameter(name)
        if ours is None or not np.isclose(ours, value, rtol=1e-6, atol=0):
            problems.append(f"{name}: {origin} means {name} {value:.7g}; scenario has {ours}")
    for name, spec in scenario.fields.items():
        problems += _field_problems(scenario, name, spec, description)
    return problems


def _field_problems(scenario: Scenario, name: str, spec, description: dict) -> list[str]:
    """Differences of one scenario field: not in the file, grid type, constant vs evolving, boundaries per side."""
    if name not in description['fields']:
        return [f"no field for '{name}' (mapped: {sorted(description['fields'])}); pass fields={{'{name}': ...}}"]
    problems = []
    if spec.grid == 'staggered':
        problems.append(
            f"field '{name}' is staggered (stored on cell faces) in the scenario; benchmark files store every field "
            f"collocated at the coordinates"
        )
    constant = not any(description['varying'][d][1] for d in description['fields'][name])
    if constant and not spec.static:
        problems.append(f"field '{name}' is constant in time in the file; the scenario's evolves")
    sides = (description['boundaries'] or {}).get(name)
    if sides and {d: tuple(v) for d, v in sides.items()} != scenario.field_sides(name):
        problems.append(f"field '{name}': boundaries (lower, upper) {sides}; scenario has {scenario.field_sides(name)}")
    return problems


def import_benchmark(
    cache: Cache, path, layout: str, fields: dict = None, trajectories=None, first_index: int = 0
) -> list[int]:
    """Imports the trajectories of a PDEBench or The Well HDF5 file as sims, validated against `cache.scenario`.

    Trajectory `j` becomes sim `first_index + j`. Vector fields are assembled from their component datasets
    (PDEBench `Vx`, `Vy`) or their trailing axis (The Well `t1_fields`). PDEBench files record no boundary conditions,
    so those are taken from the scenario unchecked.

    Args:
        cache: The target `Cache` (or `DataManager`).
        path: The HDF5 file.
        layout: `'pdebench'` or `'the_well'`.
        fields: `{our field: their dataset(s)}` (see `benchmark_description`).
        trajectories: Indices of the trajectories to import (default: all).
        first_index: Sim index of trajectory 0.

    Returns:
        The sim indices written.

    Raises:
        ValueError: The file differs from the scenario; the message lists every difference.
    """
    cache = cache_of(cache)
    import h5py

    scenario = cache.scenario
    d = benchmark_description(path, layout, fields)
    requested = list(range(d['trajectories'])) if trajectories is None else [int(j) for j in trajectories]
    problems = benchmark_problems(scenario, d) + _trajectory_problems(cache, d, requested, first_index)
    if problems:
        raise ValueError(
            f"{path} ({layout}) does not match scenario '{scenario.name}' ({scenario.params()}); nothing was "
            f"imported:\n  " + '\n  '.join(problems)
        )
    current = [None]

    def trajectories_read(f):
        for j in requested:
            current[0] = j
            yield first_index + j, {name: _benchmark_field(f, d, name, j, scenario) for name in scenario.fields}

    with h5py.File(path, 'r') as f:
        try:  # all or nothing: a later generate() must not adopt a partial import
            written = cache.write_all(trajectories_read(f), origin='imported')
        except ValueError as err:
            raise ValueError(f"{path} ({layout}) trajectory {current[0]}: {err}\nNothing was imported.") from None
    return sorted(written)


def _trajectory_problems(cache, description: dict, requested: list[int], first_index: int) -> list[str]:
    """Requested trajectories that are out of range or were never written, and target sims that exist already."""
    n, problems = description['trajectories'], []
    outside = [j for j in requested if not 0 <= j < n]
    if outside:
        problems.append(f"trajectories {outside[:10]} requested; the file has {n} (0..{n - 1})")
    unwritten = sorted(set(requested) & set(description['unwritten']))
    if unwritten:
        problems.append(
            f"{len(unwritten)} of the {n} declared trajectories were never written (no data stored, they would read "
            f"as zeros): {unwritten[:10]}{'...' if len(unwritten) > 10 else ''}; pass trajectories= with written ones"
        )
    taken = [first_index + j for j in requested if cache.path(first_index + j).exists()]
    if taken:
        problems.append(f"sims {taken[:10]} exist already in {cache.directory}; choose another first_index")
    return problems


def _benchmark_field(f, description: dict, name: str, j: int, scenario: Scenario):
    """Trajectory `j` of one field as `Tensor (timeᵇ, xˢ, [yˢ], [vectorᶜ])`, or without `time` if static (float32)."""
    spec, reader = scenario.fields[name], get_layout(description['layout'])
    arrays = [reader.read(f, description, d, j) for d in description['fields'][name]]
    values = np.stack(arrays, -1) if len(arrays) > 1 else arrays[0]
    space = math.spatial(
        **dict(zip(scenario.spatial_dims, [description['resolution'][d] for d in scenario.spatial_dims]))
    )
    has_time = any(description['varying'][d][1] for d in description['fields'][name])  # time_varying in the file
    if spec.vector and values.ndim == space.rank + has_time:  # a 1D vector field as one dataset
        values = values[..., None]
    if spec.vector and values.shape[-1] != space.rank:
        raise ValueError(
            f"field '{name}' has {values.shape[-1]} vector components in the file; scenario '{scenario.name}' has "
            f"{space.rank} ({', '.join(scenario.spatial_dims)})"
        )
    shape = (math.batch(time=values.shape[0]) if has_time else math.EMPTY_SHAPE) & space
    if spec.vector:
        shape = shape & math.channel(vector=','.join(scenario.spatial_dims))
    t = math.tensor(values, shape)
    return t.time[0] if spec.static and has_time else t


def scenario_from_benchmark(path, layout: str, scenario: Scenario | type[Scenario], fields: dict = None) -> Scenario:
    """`scenario` (class or instance) with resolution, domain size, steps and dt taken from a benchmark file."""
    d = benchmark_description(path, layout, fields)
    base = scenario() if isinstance(scenario, type) else scenario
    lower = {k: v[0] for k, v in d['bounds'].items()}
    lengths = {shortest32(v[1] - v[0]) for v in d['bounds'].values()}
    if any(abs(v) > 1e-6 for v in lower.values()) or len(lengths) != 1 or d['dt'] is None:
        raise ValueError(
            f"{path} has bounds {d['bounds']} and dt {d['dt']}; scenario '{base.name}' needs [0, L] on every axis and a dt"
        )
    if any(c != 'cell centres' for c in d['convention'].values()):
        raise ValueError(f"{path} samples points on both domain ends ({d['convention']}); scenarios store cell centres")
    same32 = lambda ours, theirs: (
        ours if np.isclose(ours, theirs, rtol=1e-6, atol=0) else theirs
    )  # float32 files: keep 2π
    return dataclasses.replace(
        base,
        resolution=tuple(d['resolution'][k] for k in base.spatial_dims),
        length=same32(base.length, lengths.pop()),
        steps=d['frames'] - 1,
        dt=same32(base.dt, d['dt']),
        **{k: value for k, (value, _) in d['parameters'].items() if hasattr(base, k)},
    )


def scenario_from_file(path, layout: str, fields: dict = None) -> Scenario:
    """The data-only scenario (`scenarios.recorded.Recorded`) a benchmark file describes: its fields (vector where
    the file stores components, static where constant in time), grid and sample convention, bounds, dt, frames,
    boundaries per field and side, and parameters; no solver. `import_benchmark` then caches the file as it is.

    Example:
        >>> from the_well.utils.dummy_data import write_dummy_data  # The Well's own dummy file
        >>> write_dummy_data(str(tmp / 'dummy.hdf5'))
        >>> s = scenario_from_file(tmp / 'dummy.hdf5', 'the_well')
        >>> s.name, s.resolution, s.frames, sorted(s.fields), s.fields['field'].vector, s.fields['constant_field'].static
        ('recorded', (32, 32), 10, ['constant_field', 'field'], True, True)
    """
    import h5py

    from .scenarios.recorded import Recorded

    d = benchmark_description(path, layout, fields)
    dims = list(d['resolution'])
    specs, sides = [], []
    with h5py.File(path, 'r') as f:
        for name, datasets in d['fields'].items():
            sample_varying, time_varying = d['varying'][datasets[0]]
            rank = f[datasets[0]].ndim - sample_varying - time_varying
            specs.append((name, len(datasets) > 1 or rank > len(dims), not time_varying))
            for dim, (lower, upper) in ((d['boundaries'] or {}).get(name) or {}).items():
                sides.append((name, dim, lower, upper))
        parameters = _file_parameters(f, d)
    if d['dt'] is None:
        raise ValueError(f"{path} ({layout}) records no time step: a recorded scenario needs one")
    return Recorded(
        resolution=tuple(d['resolution'][k] for k in dims),
        steps=d['frames'] - 1,
        dt=d['dt'],
        length=max(hi - lo for lo, hi in d['bounds'].values()),
        dims=tuple(dims),
        lower=tuple(d['bounds'][k][0] for k in dims),
        upper=tuple(d['bounds'][k][1] for k in dims),
        conventions=tuple(d['convention'][k] for k in dims),
        field_specs=tuple(specs),
        sides=tuple(sides),
        parameters=parameters,
        source=Path(path).name,
    )


def _file_parameters(f, description: dict) -> tuple:
    """`((name, value), ...)`: the parameters a layout read, and The Well's `simulation_parameters` root attributes."""
    found = {name: float(value) for name, (value, _) in description['parameters'].items()}
    for name in f.attrs.get('simulation_parameters', []):
        name = name.decode() if isinstance(name, bytes) else str(name)
        value = f.attrs.get(name)
        if isinstance(value, (int, float, np.integer, np.floating)):
            found[name] = float(value)
    return tuple(sorted(found.items()))
