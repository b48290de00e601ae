"""Viscous Burgers' equation in 1D and 2D, with PhiFlow's scheme or pseudo-spectral on a finer grid."""

from __future__ import annotations

import dataclasses
import math as pymath
from dataclasses import dataclass
from typing import ClassVar

from phi.field import CenteredGrid
from phi.geom import Box
from phi.physics import advect, diffuse
from phiml import math
from phiml.math import batch, channel, spatial

from .base import BOUNDARIES, FieldSpec, Scenario, register, sim_rng
from .noise import band_limited_noise, smooth_noise
from .spectral import points_from_cell_averages, spectral_burgers


@dataclass(frozen=True)
class Burgers(Scenario):
    """Viscous Burgers' equation `u_t + (u·∇)u = ν ∇²u` on a periodic domain `[0, length)^d`, in any number of dims;
    use `Burgers1D` or `Burgers2D`. Nondimensional units; the initial velocity is smooth random noise.

    Two discretisations:

    - `scheme='phiflow'` (default): PhiFlow's explicit diffusion and semi-Lagrangian advection on the cache's grid. Cheap,
      but not a converged solution of the PDE at the shipped sizes (issue #12 measured 0.3–1.0 relative L2 against a
      converged reference, and the periodic mean drifts).
    - `scheme='spectral'`: pseudo-spectral (`spectral_burgers`: PhiML code on real FFTs, so it runs on NumPy, torch
      and JAX and passes gradients) with the 2/3 dealiasing rule and exponential time differencing (ETDRK2: viscosity
      exact, two advection evaluations per substep), substeps keeping the advective CFL number <= 0.8 for |u| <= 5
      amplitude, on a grid `refine`
      times finer than the cache's; frames are stored as cell averages. The initial condition is a band-limited
      field (Fourier modes |n| <= 15 per axis) sampled at the cell centres of that grid, so every `refine` starts from
      the same continuous field. Measured convergence (`python benchmarks/bench_convergence.py --full`, nu = 0.01,
      amplitude 1, noise scale 1, length 2 pi; maximum over frames of the relative L2 difference to the same data
      simulated at 2x `refine`, mean / max over 3 sims): 1D at 128 cells, 60 steps of 0.05: refine 4 vs 8 0.16 /
      0.27 % (refine 2 vs 4: 1.2 / 2.0 %); 2D at 32x32, 40 steps of 0.05: refine 4 vs 8 1.4 / 1.7 % (refine 2 vs 4:
      15 / 17 %, refine 1 vs 2: 87 / 111 %; so use refine 4). Against Exponax's ETDRK2 on a 32x (1D) / 16x (2D) finer
      grid (`--exponax`): 0.18 / 0.28 % and 1.4 / 1.8 %. The 1D mean of u is conserved to round-off; in 2D the
      advective form does not conserve it (its integral is -∫ u ∇·u).

    Attributes:
        viscosity: Kinematic viscosity nu.
        amplitude: Scale of the initial velocity (the noise has unit standard deviation).
        noise_scale: Feature size of the initial noise, in domain units.
        scheme: `'phiflow'` or `'spectral'`.
        refine: Simulate on a grid `refine` times finer per axis and store cell averages (`'spectral'` only).
    """

    viscosity: float = 0.01
    amplitude: float = 1.0
    noise_scale: float = 1.0
    scheme: str = 'phiflow'
    refine: int = 1
    fields: ClassVar[dict[str, FieldSpec]] = {'velocity': FieldSpec('centered', 'periodic', vector=True)}
    learnable: ClassVar[tuple[str, ...]] = ('viscosity',)
    positive: ClassVar[tuple[str, ...]] = ('dt', 'length', 'noise_scale')
    non_negative: ClassVar[tuple[str, ...]] = ('viscosity', 'amplitude')
    version: ClassVar[int] = (
        3  # 2: PhiML spectral step in float64, initial state at the cell centres; 3: ETDRK2, real FFTs
    )

    def __post_init__(self):
        super().__post_init__()
        if self.scheme not in ('phiflow', 'spectral'):
            raise ValueError(f"{type(self).__name__}.scheme must be 'phiflow' or 'spectral', got {self.scheme!r}")
        if isinstance(self.refine, bool) or not isinstance(self.refine, int) or self.refine < 1:
            raise ValueError(f"{type(self).__name__}.refine must be an integer >= 1, got {self.refine!r}")
        if self.refine > 1 and self.scheme != 'spectral':
            raise ValueError(f"{type(self).__name__}.refine > 1 needs scheme='spectral'")

    @classmethod
    def examples(cls):
        return {
            f'{cls.name}-spectral': cls(resolution=32, steps=3, scheme='spectral', viscosity=0.05),
            f'{cls.name}-phiflow': cls(resolution=16, steps=3),
        }

    def coarse(self):
        return dataclasses.replace(self, refine=1) if self.refine > 1 else None

    @property
    def precision(self) -> int:
        return 64 if self.scheme == 'spectral' else 32  # the spectral reference in float64, stored as float32

    @property
    def jittable(self) -> bool:
        return self.scheme == 'spectral'  # PhiFlow's semi-Lagrangian advection leaks tracers under jit

    @property
    def simulation_grid(self) -> dict[str, int]:
        """Cells along each spatial dim of the grid the PDE is solved on: `refine` times the cache's."""
        return {d: n * self.refine for d, n in self.grid_size.items()}

    def upsample(self, values):
        """Point values on the `refine` times finer grid of the periodic band-limited field whose cell averages the
        cache stores (`spectral.points_from_cell_averages`)."""
        return points_from_cell_averages(values, self.refine)

    def initial_state(self, sim_index):
        rng, sizes, d = sim_rng(self.seed, sim_index), self.simulation_grid, len(self.spatial_dims)
        draw = band_limited_noise if self.scheme == 'spectral' else smooth_noise
        noise = draw(rng, tuple(sizes.values()), self.length, self.noise_scale, d)
        values = math.tensor(self.amplitude * noise, spatial(**sizes), channel(vector=','.join(self.spatial_dims)))
        return {'velocity': CenteredGrid(values, BOUNDARIES['periodic'], bounds=Box(**self.bounds), **sizes)}

    def step(self, state, params=None):
        v, viscosity = state['velocity'], (params or {}).get('viscosity', self.viscosity)
        if self.scheme == 'phiflow':
            v = diffuse.explicit(v, viscosity, self.dt)
            return {'velocity': advect.semi_lagrangian(v, v, self.dt)}
        values = spectral_burgers(v.values, self.dt / self.substeps, self.substeps, viscosity, self.length)
        return {'velocity': v.with_values(values)}

    @property
    def substeps(self) -> int:
        """ETDRK2 substeps per `dt` of the spectral scheme: advective CFL number <= 0.8 for |u| <= 5 amplitude (the
        time error stays below the spatial one: refine 4 vs 8 differ as before, `bench_convergence.py --full`)."""
        dx = self.length / max(self.simulation_grid.values())
        return pymath.ceil(self.dt * 5 * self.amplitude * pymath.sqrt(len(self.spatial_dims)) / (0.8 * dx))

    def stored(self, values):
        if self.refine == 1:
            return values
        for d, n in self.grid_size.items():  # cell averages: block d into (cells, refine) and average the blocks
            values = math.mean(math.unpack_dim(values, d, spatial(**{d: n}) & batch(_block=self.refine)), '_block')
        return values


@register
@dataclass(frozen=True)
class Burgers1D(Burgers):
    """Burgers' equation on a periodic line. Field `velocity (timeᵇ, xˢ, vectorᶜ=x)`.

    Example:
        >>> sims = simulate(Burgers1D(resolution=64, steps=10), [0, 1])
        >>> sims[0]['velocity'].shape
        (timeᵇ=11, xˢ=64, vectorᶜ=x)
    """

    resolution: tuple = (128,)
    name: ClassVar[str] = 'burgers1d'
    spatial_dims: ClassVar[tuple[str, ...]] = ('x',)
    symmetries: ClassVar[tuple[str, ...]] = ('x',)


@register
@dataclass(frozen=True)
class Burgers2D(Burgers):
    """Burgers' equation on a periodic square. Field `velocity (timeᵇ, xˢ, yˢ, vectorᶜ=x,y)`."""

    name: ClassVar[str] = 'burgers2d'
    symmetries: ClassVar[tuple[str, ...]] = ('x', 'y', 'swap')
