"""Running scenarios: whole simulations on the reference backend (or compiled on JAX), and single steps on stored
values on any backend."""

from __future__ import annotations

import functools

from phi.field import CenteredGrid, Field
from phi.geom import Box
from phiml import math
from phiml.backend import NUMPY
from phiml.math import Tensor, batch

from .._phiml import scan
from .base import BOUNDARIES, Scenario
from .fields import canonical, field_values, staggered_faces, to_field


def simulate(scenario: Scenario, indices) -> list[dict[str, Tensor]]:
    """Runs the simulations `indices` of `scenario`.

    Batchable scenarios run all `indices` in one vectorised batch (`simᵇ`); others run one sim at a time.
    Simulations always run on the NumPy backend, whatever backend is the default, so cached data does not depend on it.

    Args:
        scenario: The scenario config.
        indices: Simulation indices.

    Returns:
        One dict per index: dynamic fields `Tensor (timeᵇ=steps+1, xˢ, [yˢ], [vectorᶜ])`, static fields without `time`.

    Example:
        >>> sims = simulate(Burgers2D(resolution=16, steps=4), [0, 1])
        >>> sims[1]['velocity'].shape
        (timeᵇ=5, xˢ=16, yˢ=16, vectorᶜ=x,y)
    """
    indices = [int(i) for i in indices]
    if not indices:
        return []
    if scenario.backend == 'jax':
        import jax
        from phiml.backend.jax import JAX

        with jax.enable_x64(scenario.precision == 64), JAX, math.precision(scenario.precision):
            return _simulate(scenario, indices, jit=True)
    with NUMPY, math.precision(scenario.precision):  # the reference backend
        return _simulate(scenario, indices)


def _simulate(scenario: Scenario, indices: list[int], jit: bool = False) -> list[dict[str, Tensor]]:
    groups = [indices] if scenario.batchable else [[i] for i in indices]
    results = []
    for group in groups:
        states = [scenario.initial_state(i) for i in group]
        state = {k: math.stack([s[k] for s in states], batch('sim')) for k in states[0]}
        stacked = (_trajectory_compiled if jit else _trajectory)(scenario, state)
        for j in range(len(group)):
            results.append({k: canonical(v.sim[j], scenario.dtype) for k, v in stacked.items()})
    return results


def _trajectory(scenario: Scenario, state: dict[str, Field]) -> dict[str, Tensor]:
    """Stored frames `{field: Tensor (simᵇ, timeᵇ, ...)}` (static fields without `time`) of stepping `state`."""
    trajectory = {k: [scenario.stored(field_values(v))] for k, v in state.items() if not scenario.fields[k].static}
    for _ in range(scenario.steps):
        state = scenario.step(state)
        for k in trajectory:
            trajectory[k].append(scenario.stored(field_values(state[k])))
    stacked = {k: math.stack(frames, batch('time')) for k, frames in trajectory.items()}
    statics = {k: scenario.stored(field_values(state[k])) for k, spec in scenario.fields.items() if spec.static}
    return {**stacked, **statics}


def _trajectory_compiled(scenario: Scenario, state: dict[str, Field]) -> dict[str, Tensor]:
    """`_trajectory` as one compiled function (`jittable` scenarios: centred, no statics): every step and its stored
    frame in one loop of the backend (`_phiml.scan`)."""
    names = tuple(state)
    values = tuple(state[k].values for k in names)  # on the backend (field_values would give NumPy arrays)
    first, rest = _compiled(scenario, names)(values)
    return {k: math.concat([math.expand(first[i], batch(time=1)), rest[i]], 'time') for i, k in enumerate(names)}


@functools.lru_cache(maxsize=16)
def _compiled(scenario: Scenario, names: tuple[str, ...]):
    """The whole rollout of the fields `names`, `values -> (first stored frames, stored frames of every step)`,
    compiled with `math.jit_compile` once per process and scenario. Its inputs must be tensors of the compiling
    backend: on NumPy tensors PhiML runs it uncompiled."""

    def step(values: tuple) -> tuple:
        state = scenario.step({k: _simulation_field(scenario, k, v) for k, v in zip(names, values)})
        out = tuple(state[k].values for k in names)
        return out, tuple(scenario.stored(v) for v in out)

    def rollout(values: tuple) -> tuple:
        _, frames = scan(step, scenario.steps, values, collect=True)
        return tuple(scenario.stored(v) for v in values), frames

    return math.jit_compile(rollout)


def step_values(
    scenario: Scenario, values: dict[str, Tensor], metadata: dict = None, params: dict = None
) -> dict[str, Tensor]:
    """One `scenario.step` on stored values `{field: Tensor (batchᵇ, xˢ, [yˢ], [vectorᶜ])}` in physical units, on
    their own backend (gradients flow through it): the fields are rebuilt with `to_field` (exactly, staggered ones
    too), advanced, and returned as stored values (`staggered_faces` for staggered fields). A scenario that simulates
    on a finer grid (`simulation_grid`) is stepped there, from `Scenario.upsample`d values, and stored back: the
    resolved model of its own data.

    Args:
        metadata: Sim metadata for `to_field`; default `scenario.metadata(0)` (pass it once for many steps).
        params: Learnable parameters as tensors (`Scenario.step`).
    """
    if scenario.simulation_grid != scenario.grid_size:  # resolved: up-sample, step on the fine grid, store
        state = scenario.step(
            {f: _simulation_field(scenario, f, scenario.upsample(v)) for f, v in values.items()}, params
        )
        return {f: scenario.stored(state[f].values) for f in values}
    metadata = metadata or scenario.metadata(0)
    state = scenario.step({f: to_field(v, metadata, f) for f, v in values.items()}, params)
    return {f: staggered_faces(state[f]) if state[f].is_staggered else state[f].values for f in values}


def _simulation_field(scenario: Scenario, name: str, values: Tensor) -> CenteredGrid:
    """Centred field `name` on the scenario's simulation grid (the scenarios that simulate finer or compile store
    centred fields only)."""
    boundary = BOUNDARIES[scenario.fields[name].boundary]
    return CenteredGrid(values, boundary, bounds=Box(**scenario.bounds), **scenario.simulation_grid)
