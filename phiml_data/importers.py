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

from .generation import write_sim
from .scenarios import BOUNDARIES, Scenario, field_values


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
            'dtype': _dtype(field_values(f)),
        }
    return {'frames': len(frames), 'dt': scene.properties.get('dt'), 'fields': fields}


def _same(found, expected) -> bool:
    """Equality, with float32 tolerance for bounds (scenes store them in single precision)."""
    if (
        isinstance(expected, dict)
        and isinstance(found, dict)
        and expected
        and isinstance(next(iter(expected.values())), list)
    ):
        return found.keys() == expected.keys() and all(np.allclose(found[k], expected[k], rtol=1e-6) for k in expected)
    return found == expected


def _dtype(t) -> str:
    """NumPy dtype name of a tensor's values, e.g. `'float32'`."""
    return str(t.numpy(t.shape.names).dtype)


def scene_problems(scenario: Scenario, description: dict, dt: float = None) -> list[str]:
    """Every difference between a scene's description and what `scenario` caches."""
    problems = []
    if description['frames'] != scenario.frames:
        problems.append(
            f"{description['frames']} frames; scenario has steps={scenario.steps}, i.e. {scenario.frames} frames"
        )
    scene_dt = description['dt'] if description['dt'] is not None else dt
    if scene_dt is None:
        problems.append("the scene records no dt (Scene.put_property('dt', ...)); pass dt=... to state it")
    elif abs(float(scene_dt) - scenario.dt) > 1e-9 * max(1.0, scenario.dt):
        problems.append(f"dt={scene_dt}; scenario has dt={scenario.dt}")
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
        problems += [f"field '{name}': {k} {d[k]}; scenario has {v}" for k, v in want.items() if not _same(d[k], v)]
    return problems


def import_scene(manager, scene_path, sim_index: int, dt: float = None) -> dict:
    """Validates a PhiFlow `Scene` against `manager.scenario` and caches it as sim `sim_index`.

    Static fields are read from the first frame; staggered fields are stored as the scenario stores them.

    Args:
        manager: The target `DataManager`.
        scene_path: The scene directory.
        sim_index: Index of the sim in the cache.
        dt: Time step, if the scene records none (property `dt`).

    Returns:
        The manifest entry.

    Raises:
        ValueError: The scene differs from the scenario; the message lists every difference.
    """
    scenario = manager.scenario
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
    entry = write_sim(manager.directory, scenario, manager.fmt, sim_index, data, origin='imported')
    manager.record({sim_index: entry})
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
