"""A buoyant smoke plume in a closed box: staggered velocity, conservatively advected density, a static inflow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phi.field import StaggeredGrid
from phi.geom import Box, Sphere
from phi.physics import advect, fluid
from phiml import math
from phiml.math import Solve, channel

from .base import BOUNDARIES, FieldSpec, Scenario, register, sim_rng
from .fields import staggered_faces
from .finite_volume import conservative_advection


@register
@dataclass(frozen=True)
class SmokePlume(Scenario):
    """Buoyant smoke in a closed box, incompressible (Boussinesq): `u_t + (u·∇)u = -∇p + b ρ ŷ`, `∇·u = 0`,
    `ρ_t + ∇·(ρ u) = s`, with zero velocity on the walls. Nondimensional units; the inflow `s` (a disc of radius
    `inflow_radius` low in the box) varies in position and rate per simulation; the fluid starts at rest.

    Fields: `velocity (timeᵇ, xˢ, yˢ, vectorᶜ=x,y)` (staggered, stored exactly on the faces: `staggered_faces`),
    `density (timeᵇ, xˢ, yˢ)`, static `inflow (xˢ, yˢ)`.

    Discretisation, per step of `dt`, on the cache's grid: the density is advected by the current velocity in
    conservative flux form (`conservative_advection`: minmod-limited MUSCL, upwind fluxes, SSP-RK2 in substeps with
    `dt Σ_d max|u_d| / dx <= 0.5`), so the smoke in the box equals the inflow's total to round-off and stays
    non-negative; then the inflow is added, the velocity is advected semi-Lagrangian with PhiFlow (unconditionally
    stable; at the shipped 32x32 its CFL number `max|u| dt / dx` reaches 3.05-4.48 over 12 sims,
    `bench_convergence.py --smoke --cfl-only --sims 12`, and its time error is part of the
    convergence below), buoyancy is added on the faces and PhiFlow's pressure projection (CG, tolerance 1e-5) makes
    it divergence-free.

    Not a converged solution of the PDE. `python benchmarks/bench_convergence.py --smoke --full` (2 sims, shipped
    32x32 with 30 steps of 1.0 against the same plume on finer grids with proportionally smaller steps, compared on
    the 32x32 grid, maximum over frames): 32² vs 64²: density 49-51 %, velocity 46 % relative L2; 64² vs 128²:
    density 75-79 %, velocity 55-63 %. The differences grow with resolution: with neither viscosity nor diffusivity
    the plume's shear instabilities develop at ever smaller scales, so the data describe this discretisation at this
    resolution. Models trained on it learn that solver, not the continuous plume.
    """

    steps: int = 20
    dt: float = 1.0
    length: float = 32.0
    buoyancy: float = 0.5
    inflow_radius: float = 3.0
    inflow_rate: float = 0.2
    name: ClassVar[str] = 'smoke'
    version: ClassVar[int] = 3  # 2: conservative density advection instead of MacCormack; 3: in PhiML, float32
    fields: ClassVar[dict[str, FieldSpec]] = {
        'velocity': FieldSpec('staggered', 'zero', vector=True),
        'density': FieldSpec('centered', 'zero-gradient'),
        'inflow': FieldSpec('centered', 'zero-gradient', static=True),
    }
    batchable: ClassVar[bool] = False  # the pressure solve and the substeps depend on every sim of a batch
    symmetries: ClassVar[tuple[str, ...]] = ('x',)  # gravity breaks y, and the inflow sits low in the box
    learnable: ClassVar[tuple[str, ...]] = ('buoyancy',)
    positive: ClassVar[tuple[str, ...]] = ('dt', 'length', 'inflow_radius')
    non_negative: ClassVar[tuple[str, ...]] = ('inflow_rate',)

    def initial_state(self, sim_index):
        rng = sim_rng(self.seed, sim_index)
        cx = rng.uniform(0.3, 0.7) * self.length
        rate = self.inflow_rate * rng.uniform(0.5, 1.5)
        center = math.tensor([cx, self.length * 0.15], channel(vector='x,y'))
        inflow = rate * self._grid(Sphere(center=center, radius=self.inflow_radius), 'zero-gradient')
        velocity = StaggeredGrid(0, BOUNDARIES['zero'], bounds=Box(**self.bounds), **self.grid_size)
        return {'velocity': velocity, 'density': self._grid(0, 'zero-gradient'), 'inflow': inflow}

    def step(self, state, params=None):
        velocity, density = state['velocity'], state['density']
        buoyancy_factor = (params or {}).get('buoyancy', self.buoyancy)
        spacing = {d: self.length / n for d, n in self.grid_size.items()}
        values = conservative_advection(density.values, staggered_faces(velocity), self.dt, spacing)
        density = density.with_values(values) + self.dt * state['inflow']
        buoyancy = (density * math.tensor([0, 1], channel(vector='x,y')) * buoyancy_factor).at(velocity)
        velocity = advect.semi_lagrangian(velocity, velocity, self.dt) + self.dt * buoyancy
        solve = Solve('CG', 1e-5, 1e-5, max_iterations=2000, rank_deficiency=0)
        velocity, _ = fluid.make_incompressible(velocity, (), solve)
        return {'velocity': velocity, 'density': density, 'inflow': state['inflow']}
