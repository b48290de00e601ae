"""PDE scenarios: frozen configs that simulate trajectories as named PhiML tensors, with their physics in PhiML.

Step 1 of the pipeline (scenarios -> manager -> dataset -> trainer). A scenario is a frozen dataclass holding
everything that determines its data; `simulate` turns it into one `{field: Tensor}` dict per simulation.

| module           | what                                                                                      |
|------------------|-------------------------------------------------------------------------------------------|
| `base`           | `Scenario`, `FieldSpec`, boundaries, per-sim generators (`sim_rng`), the registry          |
| `burgers`, `smoke` | one module per PDE, each a `@register`ed `Scenario` subclass                            |
| `spectral`, `finite_volume` | numerics written with `phiml.math`: NumPy, torch and JAX, gradients, `jit_compile` |
| `noise`          | random initial conditions                                                                 |
| `fields`         | stored values <-> PhiFlow fields (`to_field`, `staggered_faces`)                           |
| `simulation`     | `simulate` (whole trajectories, reference backend) and `step_values` (one step, any backend) |
| `digest`         | the source digest that keys a scenario's cache on its code                                 |

Adding a PDE is one new module in this package with a `@register`ed subclass of `Scenario`: it is found and imported
here automatically.

Every simulation `i` draws from its own NumPy generator seeded by `(scenario.seed, i)`; nothing here touches a
process-wide RNG, so sim `i` is bit-identical whether it is generated alone, in a batch of 100, in another thread or
in another process. What determines a scenario's data, and therefore its cache key (`Scenario.identity`): its
parameters (its `backend` among them), its qualified class name, its field specs, a `version` the author bumps when
the physics change, and by default a digest of all the code it reaches (`source_digest`).

Cached tensors use one canonical layout: `(timeᵇ, xˢ[, yˢ][, vectorᶜ=x[,y]])`. Static fields (e.g. the smoke
inflow) carry no `time` dim. Staggered grids are stored exactly, in their face layout (`staggered_faces`): the same
shape as a centred field, component `d` holding the value on the lower `d`-face of each cell; `to_field` rebuilds the
solver's own `StaggeredGrid` from it, bit for bit.
"""

import importlib
import pkgutil

from .base import BOUNDARIES, SCENARIOS, STAGGERED_BOUNDARIES, FieldSpec, Scenario, register, sim_rng, sim_seed
from .digest import covered_code, source_digest
from .fields import canonical, field_values, staggered_faces, to_field
from .noise import band_limited_noise, smooth_noise
from .simulation import simulate, step_values

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_module.name}')

from .burgers import Burgers, Burgers1D, Burgers2D  # noqa: E402
from .finite_volume import conservative_advection  # noqa: E402
from .smoke import SmokePlume  # noqa: E402
from .spectral import spectral_burgers  # noqa: E402

__all__ = [
    'Scenario',
    'FieldSpec',
    'register',
    'SCENARIOS',
    'BOUNDARIES',
    'STAGGERED_BOUNDARIES',
    'Burgers',
    'Burgers1D',
    'Burgers2D',
    'SmokePlume',
    'simulate',
    'step_values',
    'to_field',
    'field_values',
    'staggered_faces',
    'canonical',
    'sim_rng',
    'sim_seed',
    'smooth_noise',
    'band_limited_noise',
    'spectral_burgers',
    'conservative_advection',
    'source_digest',
    'covered_code',
]
