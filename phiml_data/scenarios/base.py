"""The scenario interface: `Scenario`, `FieldSpec`, boundaries, per-sim random generators, and the registry."""

from __future__ import annotations

import dataclasses
import math as pymath
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from phi.field import CenteredGrid, Field
from phi.geom import Box
from phiml.math import Shape, Tensor, batch, channel, extrapolation, spatial

from ..registry import Registry
from .digest import source_digest

BOUNDARIES = {
    'periodic': extrapolation.PERIODIC,
    'zero': extrapolation.ZERO,
    'zero-gradient': extrapolation.ZERO_GRADIENT,
}
STAGGERED_LAYOUT = 'lower-faces'  # how staggered fields are cached (`staggered_faces`); part of the cache key
STAGGERED_BOUNDARIES = ('periodic', 'zero')  # staggered boundaries whose faces fit the cell grid (`staggered_faces`)


@dataclass(frozen=True)
class FieldSpec:
    """How one cached field was simulated: enough to rebuild a PhiFlow `Field` from its values.

    Attributes:
        grid: `'centered'` or `'staggered'` (staggered fields are stored on their faces, see `staggered_faces`).
        boundary: A key of `BOUNDARIES`: `'periodic'`, `'zero'` or `'zero-gradient'`; staggered fields need
            `'periodic'` or `'zero'`, whose faces fit the cell grid.
        vector: Whether the field has a `vector` channel dim.
        static: Static fields (masks, inflows) have no `time` dim and are inputs only.
    """

    grid: str = 'centered'
    boundary: str = 'periodic'
    vector: bool = False
    static: bool = False

    def __post_init__(self):
        if self.grid not in ('centered', 'staggered') or self.boundary not in BOUNDARIES:
            raise ValueError(
                f"FieldSpec: grid must be 'centered' or 'staggered' and boundary one of {sorted(BOUNDARIES)}, "
                f"got grid={self.grid!r}, boundary={self.boundary!r}"
            )
        if self.grid == 'staggered' and (self.boundary not in STAGGERED_BOUNDARIES or not self.vector):
            raise ValueError(
                f"FieldSpec: a staggered field must be a vector field with boundary {STAGGERED_BOUNDARIES} (their "
                f"faces fit the cell grid), got boundary={self.boundary!r}, vector={self.vector!r}"
            )


@dataclass(frozen=True)
class Scenario:
    """Base of all scenarios. Subclasses add their physical parameters as fields with defaults.

    Attributes:
        seed: Dataset seed; sim `i` is seeded from `(seed, i)`.
        steps: Number of time steps; trajectories hold `steps + 1` frames.
        dt: Time step.
        resolution: Cells along each spatial dim (`x`, then `y`); an int means the same for all.
        length: Domain size along each spatial dim.
        backend: What computes the simulations: `'numpy'` (the reference) or `'jax'` (the step compiled with
            `math.jit_compile`, in the scenario's `precision`; scenarios with `jittable` only). Part of the cache key,
            since the bytes may differ in the last bit between backends.
    """

    seed: int = 0
    steps: int = 40
    dt: float = 0.05
    resolution: tuple = (32, 32)
    length: float = 2 * pymath.pi
    backend: str = 'numpy'
    name: ClassVar[str] = ''
    version: ClassVar[int] = 1  # bump when the physics change without a change of parameters
    key_source: ClassVar[bool] = True  # key the cache on a digest of the source code (see `source_digest`)
    dtype: ClassVar[str] = 'float32'
    fields: ClassVar[dict[str, FieldSpec]] = {}
    batchable: ClassVar[bool] = True  # whether many sims can run in one vectorised batch, bit-identically
    symmetries: ClassVar[tuple[str, ...]] = ()  # axes the PDE may be reflected along, and 'swap' for x <-> y
    learnable: ClassVar[tuple[str, ...]] = ()  # parameters `step` accepts as tensors in `params` (physical training)
    jittable: ClassVar[bool] = (
        False  # whether `step` compiles with `math.jit_compile` (centred fields, no data-dependent loops)
    )

    spatial_dims: ClassVar[tuple[str, ...]] = ('x', 'y')
    positive: ClassVar[tuple[str, ...]] = ('dt', 'length')  # parameters that must be > 0
    non_negative: ClassVar[tuple[str, ...]] = ()  # parameters that must be >= 0

    def __post_init__(self):
        res = self.resolution
        res = (res,) * len(self.spatial_dims) if isinstance(res, int) else tuple(int(r) for r in res)
        if len(res) != len(self.spatial_dims) or min(res) < 2:
            raise ValueError(
                f"{type(self).__name__}.resolution must be {len(self.spatial_dims)} ints >= 2 for dims {self.spatial_dims}, got {self.resolution!r}"
            )
        object.__setattr__(self, 'resolution', res)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"{type(self).__name__}.seed must be an integer >= 0, got {self.seed!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"{type(self).__name__}.steps must be an integer >= 1, got {self.steps!r}")
        if self.backend not in ('numpy', 'jax') or (self.backend == 'jax' and not self.jittable):
            valid = "'numpy' or 'jax'" if self.jittable else "'numpy' (its step does not compile)"
            raise ValueError(f"{type(self).__name__}.backend must be {valid}, got {self.backend!r}")
        for f in dataclasses.fields(self):  # every number finite; declared signs (`positive`, `non_negative`)
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            sign = '> 0' if f.name in self.positive else '>= 0' if f.name in self.non_negative else None
            if not pymath.isfinite(value) or (sign == '> 0' and value <= 0) or (sign == '>= 0' and value < 0):
                raise ValueError(
                    f"{type(self).__name__}.{f.name} must be a finite number{' ' + sign if sign else ''}, got {value!r}"
                )

    @property
    def bounds(self) -> dict[str, tuple[float, float]]:
        """Lower and upper domain bound along each spatial dim."""
        return {d: (0.0, self.length) for d in self.spatial_dims}

    @property
    def grid_size(self) -> dict[str, int]:
        """Cells along each spatial dim, e.g. `{'x': 32, 'y': 32}`."""
        return dict(zip(self.spatial_dims, self.resolution))

    @property
    def frames(self) -> int:
        """Frames of a trajectory: `steps + 1` (the initial state and one per step)."""
        return self.steps + 1

    @property
    def all_periodic(self) -> bool:
        """Whether every field is periodic (then periodic shifts are symmetries and networks pad periodically)."""
        return all(spec.boundary == 'periodic' for spec in self.fields.values())

    def field_sides(self, name: str) -> dict[str, tuple[str, str]]:
        """The boundary of field `name` at the lower and upper side of each spatial dim (`FieldSpec.boundary` on every
        side, unless a scenario records more)."""
        boundary = self.fields[name].boundary
        return {d: (boundary, boundary) for d in self.spatial_dims}

    def parameter(self, name: str):
        """The value of the physical parameter `name` (e.g. `'viscosity'`), or `None` if the scenario has none."""
        return getattr(self, name, None)

    def sample_conventions(self) -> dict[str, str]:
        """Where the cached values sit along each spatial dim: `'cell centres'` (every scenario that simulates), or
        `'points'` on both domain ends (recorded data that were sampled so)."""
        return {d: 'cell centres' for d in self.spatial_dims}

    def field_shape(self, name: str) -> Shape:
        """Cached shape of field `name`: `(timeᵇ=frames, xˢ, [yˢ], [vectorᶜ=x,y])`, static fields without `time`."""
        spec = self.fields[name]
        shape = spatial(**self.grid_size)
        if not spec.static:
            shape = batch(time=self.frames) & shape
        return shape & channel(vector=','.join(self.spatial_dims)) if spec.vector else shape

    def identity(self) -> dict:
        """What determines this scenario's data besides its parameters: class, version, field specs, source digest
        and, with staggered fields, their storage layout."""
        cls = type(self)
        identity = {
            'class': f'{cls.__module__}.{cls.__qualname__}',
            'version': self.version,
            'fields': {k: dataclasses.asdict(v) for k, v in self.fields.items()},
            'source': source_digest(cls) if self.key_source else None,
        }
        if any(spec.grid == 'staggered' for spec in self.fields.values()):
            identity['staggered_layout'] = STAGGERED_LAYOUT  # caches from before it held cell-centre samples
        return identity

    @property
    def precision(self) -> int:
        """Floating-point bits `simulate` computes in on its reference backend (NumPy); cached values are `dtype`."""
        return 32

    @property
    def simulation_grid(self) -> dict[str, int]:
        """Cells along each spatial dim of the grid the PDE is solved on: the cache's (`grid_size`), or a finer one."""
        return self.grid_size

    def stored(self, values: Tensor) -> Tensor:
        """The cached values of one simulated frame `Tensor (simᵇ, xˢ, [yˢ], [vectorᶜ])`: the values themselves, or
        (scenarios that simulate on a finer grid) their cell averages on the cache's grid."""
        return values

    def upsample(self, values: Tensor) -> Tensor:
        """Values on the simulation grid from stored ones (what `stored` averaged away is reconstructed as well as the
        scenario can): the values themselves where the two grids are the same."""
        return values

    def coarse(self) -> Scenario | None:
        """This scenario solved on the cache's own grid, where it simulates on a finer one (a baseline, and a base a
        network can correct); else `None`."""
        return None

    def initial_state(self, sim_index: int) -> dict[str, Field]:
        """Initial fields of simulation `sim_index`, drawn from its own seed."""
        raise NotImplementedError

    def step(self, state: dict[str, Field], params: dict = None) -> dict[str, Field]:
        """Advances the dynamic fields of `state` by `dt`; static fields are passed through unchanged.

        Args:
            state: `{field: Field}` with any batch dims.
            params: Values of `learnable` parameters to use instead of the scenario's own, e.g.
                `{'viscosity': Tensor}` on the training backend (a gradient flows to them).
        """
        raise NotImplementedError

    @classmethod
    def examples(cls) -> dict[str, Scenario]:
        """Small instances (CI-sized) that the registry's contract tests simulate, cache, batch and step
        (`tests/test_registries.py`, `tests/test_physics.py`); override to cover each discretisation."""
        return {cls.name: cls(resolution=16, steps=3)}

    def params(self) -> dict:
        """All constructor parameters, JSON-compatible."""
        return {'scenario': self.name, **{k: _plain(v) for k, v in dataclasses.asdict(self).items()}}

    def metadata(self, sim_index: int) -> dict:
        """JSON-compatible description of sim `sim_index`: grid, boundaries, bounds, dt, resolution, parameters."""
        return {
            'scenario': self.name,
            'sim_index': int(sim_index),
            'params': self.params(),
            'identity': self.identity(),
            'dt': self.dt,
            'bounds': {k: list(v) for k, v in self.bounds.items()},
            'resolution': self.grid_size,
            'fields': {k: dataclasses.asdict(v) for k, v in self.fields.items()},
        }

    def _grid(self, values, boundary: str) -> CenteredGrid:
        return CenteredGrid(values, BOUNDARIES[boundary], bounds=Box(**self.bounds), **self.grid_size)


def _plain(value):
    """Tuples (nested too) as lists: what JSON holds."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def sim_seed(seed: int, sim_index: int) -> int:
    """The RNG seed of simulation `sim_index` in a dataset with seed `seed`."""
    return int(np.random.SeedSequence([int(seed), int(sim_index)]).generate_state(1)[0])


def sim_rng(seed: int, sim_index: int) -> np.random.Generator:
    """The random generator of simulation `sim_index`: its own stream, untouched by any other sim or thread."""
    return np.random.default_rng(sim_seed(seed, sim_index))


SCENARIOS: Registry[type[Scenario]] = Registry('scenario')  # by `scenario.name` of a run config


def register(cls: type[Scenario]) -> type[Scenario]:
    """Class decorator: makes a scenario available under `cls.name` (run configs' `scenario.name`).

    Raises:
        ValueError: Another scenario has that name.
    """
    return SCENARIOS.register()(cls)
