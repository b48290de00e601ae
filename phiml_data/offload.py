"""The PhiML-native route, for comparison: `phiml.parallel.parallel_compute` with `cache_dir` and `memory_limit`.

`parallel_compute` evaluates a dataclass property in worker processes and moves results over `memory_limit` into
HDF5 files in `cache_dir`, returning lazy tensors. It is a *memory offload* for one computation: its files carry no
dim attributes, are never reused by a later run and are not cleaned up. `DataManager` is the persistent, shareable,
validated cache; use this route when an ensemble must be computed once inside a memory budget.

`parallel_property` needs its output shapes when the class is defined, so `ensemble_type` makes one class per
scenario layout and registers it in this module; forked workers find it there.
"""

from __future__ import annotations

from dataclasses import dataclass

from phiml import math
from phiml.math import Tensor, batch, channel, spatial
from phiml.parallel import parallel_compute, parallel_property

from .scenarios import Scenario, simulate


def _out_shapes(scenario: Scenario) -> dict:
    space = spatial(**scenario.grid_size)
    shapes = {}
    for name, spec in scenario.fields.items():
        shape = (math.EMPTY_SHAPE if spec.static else batch(time=scenario.frames)) & space
        shapes[name] = shape & channel(vector=','.join(scenario.spatial_dims)) if spec.vector else shape
    return shapes


def trajectories(self) -> dict:
    """Simulates the sims `self.sim` (module level, and named like the property: PhiML reads its source to find the fields it uses)."""
    scenario, sim = self.scenario, self.sim  # read self outside comprehensions: PhiML scans LOAD_FAST self
    sims = simulate(scenario, sim.numpy('sim').tolist())
    return {k: math.stack([s[k] for s in sims], sim.shape) for k in sims[0]}


def ensemble_type(scenario: Scenario) -> type:
    """A dataclass `(scenario, sim: Tensor (simᵇ))` with the `@parallel_property` `trajectories`: `{field: Tensor (simᵇ, ...)}`."""
    name = f"Ensemble_{scenario.name}_{'x'.join(map(str, scenario.resolution))}_t{scenario.frames}"
    if name in globals():
        return globals()[name]

    cls = dataclass(
        type(
            name,
            (),
            {
                '__annotations__': {'scenario': Scenario, 'sim': Tensor},
                '__module__': __name__,
                'trajectories': parallel_property(trajectories, requires=None, out=_out_shapes(scenario)),
            },
        )
    )
    globals()[name] = cls
    return cls


def compute_ensemble(
    scenario: Scenario, n_sims: int, cache_dir: str, memory_limit: float, max_workers: int = 2
) -> dict:
    """Simulates sims `0..n_sims-1` with `parallel_compute`, offloading results over `memory_limit` bytes to `cache_dir`.

    Returns:
        `{field: Tensor (simᵇ, timeᵇ, xˢ, [yˢ], [vectorᶜ])}`, disk-backed where the limit required it.
    """
    cls = ensemble_type(scenario)
    ensemble = cls(scenario, math.range(batch(sim=n_sims)))
    parallel_compute(
        ensemble,
        [cls.trajectories],
        parallel_dims=batch('sim'),
        max_workers=max_workers,
        memory_limit=memory_limit,
        cache_dir=cache_dir,
    )
    return ensemble.trajectories
