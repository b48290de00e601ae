"""Recorded data without a solver of ours: the scenario a benchmark file describes (fields, grid, dt, boundaries per
field and side, parameters), so that its trajectories can be cached, verified, batched and learned by a network
without writing a scenario class (`importers.scenario_from_file`, CLI `import FILE --from LAYOUT --out DIR`).

It cannot simulate: `generate` refuses to make sims it does not have, and physical or hybrid training is refused (no
learnable parameters). Its cache key covers everything it records, the source file's name among it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import FieldSpec, Scenario, register


@register
@dataclass(frozen=True)
class Recorded(Scenario):
    """Trajectories recorded elsewhere, as a benchmark file describes them.

    Attributes:
        dims: Spatial dim names, e.g. `('x', 'y')`.
        lower, upper: Domain bounds per dim (the file's sample positions taken as cell centres, or as points on both
            domain ends where `conventions` says so).
        conventions: Per dim `'cell centres'` or `'points'`.
        field_specs: `((field, vector, static), ...)`.
        sides: `((field, dim, lower, upper), ...)`: each field's boundary per side (`'periodic'`, `'zero'`,
            `'zero-gradient'`), as the file records it.
        parameters: `((name, value), ...)`: the file's simulation parameters (descriptive).
        source: The file the data came from (its name).

    Example:
        >>> s = Recorded(resolution=(8,), steps=2, dims=('x',), lower=(0.0,), upper=(1.0,), field_specs=(('u', False, False),))
        >>> s.field_shape('u'), s.bounds
        ((timeᵇ=3, xˢ=8), {'x': (0.0, 1.0)})
    """

    dims: tuple = ('x', 'y')
    lower: tuple = (0.0, 0.0)
    upper: tuple = (1.0, 1.0)
    conventions: tuple = ()
    field_specs: tuple = ()
    sides: tuple = ()
    parameters: tuple = ()
    source: str = ''
    length: float = 1.0
    name: ClassVar[str] = 'recorded'

    def __post_init__(self):
        for key in ('dims', 'lower', 'upper', 'conventions', 'field_specs', 'sides', 'parameters'):
            value = getattr(self, key)
            nested = tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in value)
            object.__setattr__(self, key, nested)
        super().__post_init__()
        if len(self.lower) != len(self.dims) or len(self.upper) != len(self.dims) or not self.field_specs:
            raise ValueError(
                f"Recorded: lower and upper need one bound per dim of {self.dims} and field_specs at least one field, "
                f"got lower={self.lower}, upper={self.upper}, field_specs={self.field_specs}"
            )

    @property
    def spatial_dims(self) -> tuple[str, ...]:
        return tuple(self.dims)

    @property
    def bounds(self) -> dict[str, tuple[float, float]]:
        return {d: (float(lo), float(hi)) for d, lo, hi in zip(self.dims, self.lower, self.upper)}

    @property
    def fields(self) -> dict[str, FieldSpec]:
        specs = {}
        for name, vector, static in self.field_specs:
            sides = {b for f, _, lo, hi in self.sides if f == name for b in (lo, hi)}
            boundary = sides.pop() if len(sides) == 1 else 'zero-gradient'  # a summary: `field_sides` is exact
            specs[name] = FieldSpec('centered', boundary, vector=bool(vector), static=bool(static))
        return specs

    def field_sides(self, name: str) -> dict[str, tuple[str, str]]:
        recorded = {d: (lo, hi) for f, d, lo, hi in self.sides if f == name}
        return recorded or super().field_sides(name)

    def parameter(self, name: str):
        return dict(self.parameters).get(name)

    def sample_conventions(self) -> dict[str, str]:
        return dict(zip(self.dims, self.conventions)) if self.conventions else super().sample_conventions()

    @classmethod
    def examples(cls) -> dict:
        return {}  # nothing to simulate: `tests/test_importers.py` imports recorded data instead

    def initial_state(self, sim_index):
        raise ValueError(
            f"scenario 'recorded' has no solver: its sims come from {self.source or 'a recorded file'}; sim "
            f"{sim_index} is not cached. Import it, or lower data.n_sims to the sims imported"
        )

    def step(self, state, params=None):
        raise ValueError(f"scenario 'recorded' has no solver (data from {self.source or 'a recorded file'})")
