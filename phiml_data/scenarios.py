"""PDE scenarios: frozen configs that simulate trajectories as named PhiML tensors.

Step 1 of the pipeline (scenarios -> manager -> dataset -> trainer). A scenario is a frozen dataclass holding
everything that determines its data; `simulate` turns it into one `{field: Tensor}` dict per simulation.

Every simulation `i` draws from its own NumPy generator seeded by `(scenario.seed, i)`; nothing here touches a
process-wide RNG, so sim `i` is bit-identical whether it is generated alone, in a batch of 100, in another thread or
in another process.

What determines a scenario's data, and therefore its cache key (`Scenario.identity`): its parameters, its qualified
class name, its field specs, a `version` the author bumps when the physics change, and by default a digest of its
source code (see `source_digest`).

Cached tensors use one canonical layout: `(timeᵇ, xˢ[, yˢ][, vectorᶜ=x[,y]])`. Static fields (e.g. the smoke
inflow) carry no `time` dim. Staggered grids are stored exactly, in their face layout (`staggered_faces`): the same
shape as a centred field, component `d` holding the value on the lower `d`-face of each cell; `to_field` rebuilds the
solver's own `StaggeredGrid` from it, bit for bit.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import inspect
import math as pymath
import sys
import textwrap
import threading
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from phi.field import CenteredGrid, Field, StaggeredGrid
from phi.geom import Box, Sphere
from phi.physics import advect, diffuse, fluid
from phiml import math
from phiml.backend import NUMPY
from phiml.math import Shape, Solve, Tensor, batch, channel, dual, extrapolation, spatial

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
    """

    seed: int = 0
    steps: int = 40
    dt: float = 0.05
    resolution: tuple = (32, 32)
    length: float = 2 * pymath.pi
    name: ClassVar[str] = ''
    version: ClassVar[int] = 1  # bump when the physics change without a change of parameters
    key_source: ClassVar[bool] = True  # key the cache on a digest of the source code (see `source_digest`)
    dtype: ClassVar[str] = 'float32'
    fields: ClassVar[dict[str, FieldSpec]] = {}
    batchable: ClassVar[bool] = True  # whether many sims can run in one vectorised batch, bit-identically
    symmetries: ClassVar[tuple[str, ...]] = ()  # axes the PDE may be reflected along, and 'swap' for x <-> y
    learnable: ClassVar[tuple[str, ...]] = ()  # parameters `step` accepts as tensors in `params` (physical training)

    spatial_dims: ClassVar[tuple[str, ...]] = ('x', 'y')

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
        if not self.dt > 0 or not self.length > 0:
            raise ValueError(
                f"{type(self).__name__}: dt and length must be > 0, got dt={self.dt!r}, length={self.length!r}"
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

    def stored(self, values: Tensor) -> Tensor:
        """The cached values of one simulated frame `Tensor (simᵇ, xˢ, [yˢ], [vectorᶜ])`: the values themselves, or
        (scenarios that simulate on a finer grid) their cell averages on the cache's grid."""
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

    def params(self) -> dict:
        """All constructor parameters, JSON-compatible."""
        return {
            'scenario': self.name,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()},
        }

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


def sim_seed(seed: int, sim_index: int) -> int:
    """The RNG seed of simulation `sim_index` in a dataset with seed `seed`."""
    return int(np.random.SeedSequence([int(seed), int(sim_index)]).generate_state(1)[0])


def sim_rng(seed: int, sim_index: int) -> np.random.Generator:
    """The random generator of simulation `sim_index`: its own stream, untouched by any other sim or thread."""
    return np.random.default_rng(sim_seed(seed, sim_index))


def smooth_noise(
    rng: np.random.Generator, resolution: tuple, length: float, scale: float, components: int
) -> np.ndarray:
    """Random periodic field `[*resolution, components]` with features of size `scale` (domain units).

    White noise filtered by a Gaussian `exp(-(k scale)^2 / 2)` in Fourier space; each component has mean exactly 0
    and standard deviation 1. Drawn from `rng` alone.
    """
    k2 = sum(np.meshgrid(*[(2 * np.pi * np.fft.fftfreq(n, d=length / n)) ** 2 for n in resolution], indexing='ij'))
    weight = np.exp(-0.5 * k2 * scale**2)
    weight.flat[0] = 0.0
    out = np.empty((*resolution, components), np.float32)
    for c in range(components):
        coefficients = rng.standard_normal(resolution) + 1j * rng.standard_normal(resolution)
        values = np.real(np.fft.ifftn(coefficients * weight))
        out[..., c] = (values - values.mean()) / values.std()
    return out


_DIGEST_LOCK = threading.Lock()  # CPython's AST constructor is not safe in concurrent threads


def source_digest(cls: type) -> str:
    """SHA-256 of the code that defines scenario class `cls`: 16 hex digits of the hash of `covered_code(cls)`.

    Trade-off: any change of that code (a renamed local, a refactoring with identical results) gives a new cache key
    and so a regeneration. Code outside `covered_code` (other libraries, whose versions the key holds separately)
    is not seen: bump `version` when a change there changes the data, or set `key_source = False` and rely on
    `version` alone.
    """
    with _DIGEST_LOCK:
        return _source_digest(cls)


@functools.lru_cache(maxsize=None)
def _source_digest(cls: type) -> str:
    code = _covered(cls)
    return hashlib.sha256('\n'.join(f'{k}\n{v}' for k, v in sorted(code.items())).encode()).hexdigest()[:16]


def covered_code(cls: type) -> list[str]:
    """Qualified names of the code that `source_digest(cls)` covers, sorted.

    That is every scenario class in the MRO of `cls` and, transitively, every function, class and simple constant
    (number, string, tuple of them) that their code names, directly or as `module.name`, if it is defined in
    `phiml_data` or in the top-level package of the scenario's own module; as syntax trees without docstrings,
    comments or formatting (constants by value).

    Example:
        >>> 'phiml_data.scenarios._upwind_flux' in covered_code(SmokePlume)  # called by a helper of SmokePlume.step
        True
    """
    with _DIGEST_LOCK:
        return sorted(_covered(cls))


def _covered(cls: type) -> dict[str, str]:
    code, roots = {}, {'phiml_data'}
    classes = [c for c in cls.__mro__ if isinstance(c, type) and issubclass(c, Scenario)]
    roots |= {c.__module__.split('.')[0] for c in classes}
    todo = [(c, sys.modules.get(c.__module__)) for c in classes]
    while todo:
        obj, module = todo.pop()
        name = f'{obj.__module__}.{obj.__qualname__}'
        if name in code:
            continue
        try:
            tree = _parse(obj)
        except ValueError:
            if not inspect.isclass(obj):
                raise
            tree = _members_tree(obj)  # a class defined in a notebook or REPL: its own members instead
        code[name] = _dump(tree)
        for ref_name, ref in _references(tree, sys.modules.get(obj.__module__, module)):
            if inspect.isfunction(ref) or inspect.isclass(ref):
                if ref.__module__.split('.')[0] in roots and ref.__name__ not in ('source_digest', 'covered_code'):
                    todo.append((ref, None))
            elif isinstance(ref, (int, float, str, tuple)) and _simple(ref):
                code[f'{obj.__module__}:{ref_name}'] = repr(ref)
    return code


def _references(tree: ast.AST, module) -> list[tuple[str, object]]:
    """`(name, object)` of the module-level names a syntax tree uses: `name` and `module_alias.name`."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and hasattr(module, node.id):
            out.append(
                (
                    node.id,
                    inspect.unwrap(getattr(module, node.id))
                    if callable(getattr(module, node.id))
                    else getattr(module, node.id),
                )
            )
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            base = getattr(module, node.value.id, None)
            if inspect.ismodule(base) and hasattr(base, node.attr):
                ref = getattr(base, node.attr)
                out.append((f'{node.value.id}.{node.attr}', inspect.unwrap(ref) if callable(ref) else ref))
    return out


def _simple(value) -> bool:
    """Whether a constant has a repr that is the same in every process (no object addresses)."""
    if isinstance(value, tuple):
        return all(_simple(v) for v in value)
    return isinstance(value, (bool, int, float, str)) or value is None


def _members_tree(cls: type) -> ast.AST:
    """A syntax tree standing for a class whose source file is unavailable: its methods' sources (IPython keeps
    those of functions) and the values of its other attributes, in name order."""
    body = []
    for name, obj in sorted(vars(cls).items()):
        if name.startswith('__'):  # dataclass-generated methods (from the fields, which the parameters cover)
            continue
        function = getattr(obj, '__func__', getattr(obj, 'fget', obj))
        if inspect.isfunction(function):
            body += _parse(function).body
        else:
            body.append(ast.Assign([ast.Name(name)], ast.Constant(repr(obj)), lineno=0))
    return ast.Module(body=body, type_ignores=[])


def _parse(obj) -> ast.AST:
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except (OSError, TypeError) as err:
        raise ValueError(
            f"Cannot read the source of {obj.__qualname__} to key its cache ({err}). Define it in a module, or "
            f"set `key_source = False` on the class and bump its `version` whenever its physics change."
        ) from None


def _dump(tree: ast.AST) -> str:
    """The syntax tree as text, without docstrings, positions, comments or formatting."""
    for node in ast.walk(tree):
        body = getattr(node, 'body', None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(getattr(body[0], 'value', None), ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


@dataclass(frozen=True)
class Burgers(Scenario):
    """Viscous Burgers' equation `u_t + (u·∇)u = ν ∇²u` on a periodic domain `[0, length)^d`, in any number of dims;
    use `Burgers1D` or `Burgers2D`. Nondimensional units; the initial velocity is smooth random noise.

    Two discretisations:

    - `scheme='phiflow'` (default): PhiFlow's explicit diffusion and semi-Lagrangian advection on the cache's grid. Cheap,
      but not a converged solution of the PDE at the shipped sizes (issue #12 measured 0.3–1.0 relative L2 against a
      converged reference, and the periodic mean drifts).
    - `scheme='spectral'`: pseudo-spectral (real FFTs) with the 2/3 dealiasing rule and integrating-factor RK4
      (viscosity exact), substeps keeping the advective CFL number <= 0.8 for |u| <= 5 amplitude (time error about
      2e-5 of the state), on a grid `refine` times finer than the cache's; frames are stored as cell averages. The
      initial condition is a band-limited field (Fourier modes |n| <= 15 per axis) evaluated on that grid, so every
      `refine` starts from the same continuous field. Measured convergence (`python benchmarks/bench_convergence.py
      --full`, nu = 0.01, amplitude 1, noise scale 1, length 2 pi; maximum over frames of the relative L2 difference
      to the same data simulated at 2x `refine`, mean / max over 3 sims): 1D at 128 cells, 60 steps of 0.05: refine 4
      vs 8 1.7 / 1.9 % (refine 2 vs 4: 3.7 / 4.4 %); 2D at 32x32, 40 steps of 0.05: refine 4 vs 8 3.4 / 4.1 % (refine
      2 vs 4: 15 / 18 %, refine 1 vs 2: 87 / 111 %; so use refine 4, about 3 s per sim on one core); 2D at 64x64,
      nu = 0.005, 100 steps of 0.02 (`--research --full`, 1 sim): refine 4 vs 8 2.5 % (refine 2 vs 4: 10.6 %; refine 1
      diverges). The 1D mean of u is conserved to round-off; in 2D the advective form does not conserve it (its
      integral is -∫ u ∇·u).

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
    version: ClassVar[int] = 2  # 2: PhiML spectral step (complex FFTs) in float64, initial state at the cell centres

    def __post_init__(self):
        super().__post_init__()
        if self.scheme not in ('phiflow', 'spectral'):
            raise ValueError(f"{type(self).__name__}.scheme must be 'phiflow' or 'spectral', got {self.scheme!r}")
        if isinstance(self.refine, bool) or not isinstance(self.refine, int) or self.refine < 1:
            raise ValueError(f"{type(self).__name__}.refine must be an integer >= 1, got {self.refine!r}")
        if self.refine > 1 and self.scheme != 'spectral':
            raise ValueError(f"{type(self).__name__}.refine > 1 needs scheme='spectral'")

    def coarse(self):
        return dataclasses.replace(self, refine=1) if self.refine > 1 else None

    @property
    def precision(self) -> int:
        return 64 if self.scheme == 'spectral' else 32  # the spectral reference in float64, stored as float32

    @property
    def simulation_grid(self) -> dict[str, int]:
        """Cells along each spatial dim of the grid the PDE is solved on: `refine` times the cache's."""
        return {d: n * self.refine for d, n in self.grid_size.items()}

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
        dx = self.length / max(self.simulation_grid.values())
        cfl = 0.8  # RK4 substeps: time error about 2e-5 of the state at 0.8 (1e-6 at 0.4), far below the spatial error
        substeps = int(np.ceil(self.dt * 5 * self.amplitude * np.sqrt(len(self.spatial_dims)) / (cfl * dx)))
        values = spectral_burgers(v.values, self.dt / substeps, substeps, viscosity, self.length)
        return {'velocity': v.with_values(values)}

    def stored(self, values):
        if self.refine == 1:
            return values
        for d, n in self.grid_size.items():  # cell averages: block d into (cells, refine) and average the blocks
            values = math.mean(math.unpack_dim(values, d, spatial(**{d: n}) & batch(_block=self.refine)), '_block')
        return values


def band_limited_noise(
    rng: np.random.Generator, resolution: tuple, length: float, scale: float, components: int, modes: int = 15
) -> np.ndarray:
    """Like `smooth_noise`, but the same continuous field on every grid: random Fourier coefficients for the integer
    wavenumbers `|n| <= modes` per axis (filtered by `exp(-(k scale)^2 / 2)`), evaluated at the cell centres
    `(j + 1/2) length / n` of a grid of `resolution` (each axis > 2 modes, as PhiFlow places its samples), and
    scaled to unit standard deviation per component by the coefficients' total power (Parseval)."""
    if min(resolution) <= 2 * modes:
        raise ValueError(f"band_limited_noise needs more than {2 * modes} cells per axis, got {resolution}")
    n = np.arange(-modes, modes + 1)
    grids = np.meshgrid(*[n] * len(resolution), indexing='ij')
    weight = np.exp(-0.5 * sum((2 * np.pi * g / length) ** 2 for g in grids) * scale**2)
    weight[(modes,) * len(resolution)] = 0.0
    out = np.empty((*resolution, components), np.float32)
    for c in range(components):
        coefficients = (rng.standard_normal(weight.shape) + 1j * rng.standard_normal(weight.shape)) * weight
        spectrum = np.zeros(resolution, complex)
        centres = np.exp(1j * np.pi * sum(g / r for g, r in zip(grids, resolution)))  # sampled at (j + 1/2) dx
        spectrum[tuple(g % r for g, r in zip(grids, resolution))] = coefficients * centres
        values = np.real(np.fft.ifftn(spectrum)) * np.prod(resolution)
        power = np.sum(np.abs(coefficients) ** 2) / 2  # variance of the real part of the field
        out[..., c] = values / np.sqrt(power)
    return out


def spectral_burgers(u: Tensor, h: float, substeps: int, viscosity, length: float) -> Tensor:
    """`substeps` integrating-factor RK4 steps of size `h` of `u_t + (u·∇)u = ν∇²u`, periodic on `[0, length)^d`,
    pseudo-spectral (`math.fft`) with the 2/3 dealiasing rule. PhiML code: runs on NumPy, torch and JAX, passes
    gradients (to `u` and to `viscosity`, which may be a tensor) and compiles with `math.jit_compile`.

    Args:
        u: `Tensor (..., xˢ, [yˢ], vectorᶜ=x[,y])`, computed in the current precision (`math.precision`).
        viscosity: ν, a float or a `Tensor` broadcast against `u`'s batch dims.

    Returns:
        `Tensor` of the shape of `u`.

    Example:
        >>> x = math.tensor((np.arange(64) + 0.5) * 2 * np.pi / 64, spatial('x'))
        >>> u = math.expand(math.sin(x), channel(vector='x'))  # a sine wave decays as exp(-ν t) until it steepens
        >>> out = spectral_burgers(0 * u + 1e-3 * u, 0.1, 10, 0.5, 2 * np.pi)
        >>> round(float(math.max(out) / math.max(1e-3 * u)), 4), round(float(np.exp(-0.5)), 4)
        (0.6065, 0.6065)
    """
    space = u.shape.spatial
    u = math.to_float(u)
    scale = math.tensor([2 * np.pi * n / length for n in space.sizes], channel(deriv=space.names))
    k = math.rename_dims(math.fftfreq(space), 'vector', channel(deriv=space.names)) * scale  # wavenumbers
    cutoff = math.tensor([(2 / 3) * np.pi * n / length for n in space.sizes], channel(deriv=space.names))
    keep = math.all(abs(k) < cutoff, 'deriv')
    k2 = math.sum(k**2, 'deriv')
    e, e2 = math.exp(-viscosity * k2 * h), math.exp(-viscosity * k2 * h / 2)
    along = math.rename_dims(u, 'vector', channel(deriv=space.names)) * 0  # only the item names of `deriv`

    def nonlinear(uh):
        uh = uh * keep
        values = math.real(math.ifft(uh, space))
        gradient = math.real(math.ifft(1j * k * uh, space))  # (..., vector=component, deriv=direction)
        velocity = math.rename_dims(values, 'vector', along.shape['deriv'])
        return -math.fft(math.sum(velocity * gradient, 'deriv'), space) * keep

    uh = math.fft(u, space)
    for _ in range(substeps):
        a = h * nonlinear(uh)
        b = h * nonlinear(e2 * (uh + a / 2))
        c = h * nonlinear(e2 * uh + b / 2)
        d = h * nonlinear(e * uh + e2 * c)
        uh = e * uh + (e * a + 2 * e2 * (b + c) + d) / 6
    return math.real(math.ifft(uh, space))


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


@dataclass(frozen=True)
class Burgers2D(Burgers):
    """Burgers' equation on a periodic square. Field `velocity (timeᵇ, xˢ, yˢ, vectorᶜ=x,y)`."""

    name: ClassVar[str] = 'burgers2d'
    symmetries: ClassVar[tuple[str, ...]] = ('x', 'y', 'swap')


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
    stable; at the shipped 32x32 its CFL number `max|u| dt / dx` reaches 3.4-3.7, and its time error is part of the
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


def conservative_advection(q: Tensor, faces: Tensor, dt: float, spacing: dict, cfl: float = 0.5) -> Tensor:
    """Advects cell averages `q` for `dt` in a closed box with face velocities `faces` (the `staggered_faces`
    layout; wall faces carry no flux). PhiML code: runs on NumPy, torch and JAX and passes gradients to `q` and
    `faces`; computed in the current precision.

    Conservative flux form: MUSCL reconstruction with the minmod limiter (zero-gradient ghost cells), upwind fluxes,
    SSP-RK2 (Heun) in time, in equal substeps with `h Σ_d max|u_d| / dx_d <= cfl`, counted for each sample of the
    batch dims on its own (a sample's result does not depend on the others; samples that need fewer substeps stop
    earlier). The total `Σ q dV` changes only by round-off, and for `cfl <= 0.5` a non-negative `q` stays
    non-negative. The substep count depends on the data, so this runs eagerly (no `jit_compile`).

    Args:
        q: `Tensor (..., xˢ, [yˢ])`.
        faces: `Tensor (..., xˢ, [yˢ], vectorᶜ=x[,y])`, component `d` on the lower `d`-faces.
        spacing: Cell size along each spatial dim, e.g. `{'x': 1.0, 'y': 1.0}`.

    Example:
        >>> x = math.range(spatial(x=16)) * 1.0
        >>> q = math.exp(-((x - 4) ** 2) / 4)  # a bump at x = 4, moved by u = 0.5 for t = 4
        >>> out = conservative_advection(q, math.ones(spatial(x=16), channel(vector='x')) * 0.5, 4.0, {'x': 1.0})
        >>> bool(abs(math.sum(out) - math.sum(q)) < 1e-5), round(float(math.sum(out * x) / math.sum(out)), 1), bool(math.min(out) >= 0)
        (True, 6.0, True)
    """
    space = q.shape.spatial
    rate = sum(math.max(abs(faces.vector[d]), space) / spacing[d] for d in space.names)
    substeps = math.maximum(1, math.ceil(math.stop_gradient(dt * rate / cfl)))  # per sample
    h = dt / substeps

    def tendency(values):
        out = 0
        for d in space.names:
            flux = _upwind_flux(values, faces.vector[d], d)  # on the lower face of each cell, 0 on the lower wall
            upper = math.pad(flux[{d: slice(1, None)}], {d: (0, 1)}, 0)  # ... and 0 on the upper wall
            out = out - (upper - flux) / spacing[d]
        return out

    for i in range(int(math.max(substeps, substeps.shape))):
        stage = q + h * tendency(q)
        q = math.where(i < substeps, 0.5 * (q + stage + h * tendency(stage)), q)
    return q


def _upwind_flux(q: Tensor, u: Tensor, d: str) -> Tensor:
    """`u q` on the lower face of each cell along `d`, `q` reconstructed from the upwind side (MUSCL, minmod); 0 on
    the lower wall face."""
    n = q.shape.get_size(d)
    padded = math.pad(q, {d: (2, 2)}, extrapolation.ZERO_GRADIENT)
    diff = padded[{d: slice(1, None)}] - padded[{d: slice(None, -1)}]  # n + 3 differences
    back, forward = diff[{d: slice(0, n + 2)}], diff[{d: slice(1, n + 3)}]
    slope = math.where(back * forward > 0, math.sign(back) * math.minimum(abs(back), abs(forward)), 0)
    below = padded[{d: slice(1, n + 1)}] + 0.5 * slope[{d: slice(0, n)}]  # cell i-1, from below the face
    above = padded[{d: slice(2, n + 2)}] - 0.5 * slope[{d: slice(1, n + 1)}]  # cell i, from above the face
    flux = u * math.where(u > 0, below, above)
    return math.pad(flux[{d: slice(1, None)}], {d: (1, 0)}, 0)  # closed lower wall


SCENARIOS: dict[str, type[Scenario]] = {cls.name: cls for cls in (Burgers1D, Burgers2D, SmokePlume)}


def field_values(f: Field) -> Tensor:
    """The stored values of a field in canonical dim order `(batch..., spatial..., channel...)`: a centred grid's
    values, a staggered grid's face layout (`staggered_faces`)."""
    return canonical(staggered_faces(f) if f.is_staggered else f.values)


def staggered_faces(f: Field) -> Tensor:
    """The face values of a staggered grid on the cell grid, exactly: `Tensor (..., xˢ, [yˢ], vectorᶜ=x[,y])`.

    Component `d` at cell index `i` along `d` holds the value on the lower `d`-face of cell `i` (at `i·dx` along `d`;
    at the cell centre along the other axes). Periodic grids store exactly these faces; with `zero` boundaries index
    0 along `d` holds the wall face, which the boundary condition keeps at 0, and the upper wall face is left out
    (also 0). `to_field` inverts this bit for bit. Networks see these face values as they are.

    Example:
        >>> from phi.field import StaggeredGrid
        >>> v = StaggeredGrid((1, 2), extrapolation.ZERO, x=4, y=3)
        >>> faces = staggered_faces(v)
        >>> faces.vector['x'].numpy('x,y')[:, 0].tolist(), faces.vector['y'].numpy('x,y')[0].tolist()
        ([0.0, 1.0, 1.0, 1.0], [0.0, 2.0, 2.0])
    """
    components = f.values.shape.dual.item_names[0]
    faces = []
    for d in components:
        values = f.values[{'~vector': d}]
        missing = f.resolution.get_size(d) - values.shape.get_size(d)
        if missing not in (0, 1):
            raise ValueError(
                f"Staggered grid with boundary {f.boundary} has {values.shape.get_size(d)} {d}-faces per row for "
                f"{f.resolution.get_size(d)} cells; only boundaries {STAGGERED_BOUNDARIES} can be stored"
            )
        faces.append(math.pad(values, {d: (missing, 0)}, 0))  # the lower wall face, 0 by the boundary condition
    return math.stack(faces, channel(vector=','.join(components)))


def canonical(t: Tensor, dtype: str = None) -> Tensor:
    """Reorders `t` to `(batch..., spatial..., channel...)` so that its NumPy layout matches the cache layout; with
    `dtype` (e.g. `'float32'`) its values are cast to it."""
    order = t.shape.batch + t.shape.instance + t.shape.spatial + t.shape.channel
    values = t.numpy(order.names)
    return math.tensor(values if dtype is None else values.astype(dtype), order)


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
    with NUMPY, math.precision(scenario.precision):  # the reference backend: bytes never depend on ML backends
        return _simulate(scenario, indices)


def _simulate(scenario: Scenario, indices: list[int]) -> list[dict[str, Tensor]]:
    groups = [indices] if scenario.batchable else [[i] for i in indices]
    results = []
    for group in groups:
        states = [scenario.initial_state(i) for i in group]
        state = {k: math.stack([s[k] for s in states], batch('sim')) for k in states[0]}
        trajectory = {k: [scenario.stored(field_values(v))] for k, v in state.items() if not scenario.fields[k].static}
        for _ in range(scenario.steps):
            state = scenario.step(state)
            for k in trajectory:
                trajectory[k].append(scenario.stored(field_values(state[k])))
        stacked = {k: math.stack(frames, batch('time')) for k, frames in trajectory.items()}
        stacked.update(
            {k: scenario.stored(field_values(state[k])) for k, spec in scenario.fields.items() if spec.static}
        )
        for j in range(len(group)):
            results.append({k: canonical(v.sim[j], scenario.dtype) for k, v in stacked.items()})
    return results


def step_values(
    scenario: Scenario, values: dict[str, Tensor], metadata: dict = None, params: dict = None
) -> dict[str, Tensor]:
    """One `scenario.step` on stored values `{field: Tensor (batchᵇ, xˢ, [yˢ], [vectorᶜ])}` in physical units, on
    their own backend (gradients flow through it): the fields are rebuilt with `to_field` (exactly, staggered ones
    too), advanced, and returned as stored values (`staggered_faces` for staggered fields).

    Args:
        metadata: Sim metadata for `to_field`; default `scenario.metadata(0)` (pass it once for many steps).
        params: Learnable parameters as tensors (`Scenario.step`).
    """
    metadata = metadata or scenario.metadata(0)
    state = scenario.step({f: to_field(v, metadata, f) for f, v in values.items()}, params)
    return {f: staggered_faces(state[f]) if state[f].is_staggered else state[f].values for f in values}


def to_field(values: Tensor, metadata: dict, name: str) -> Field:
    """Rebuilds the PhiFlow `Field` of cached field `name` from its values and the sim's metadata.

    Args:
        values: `Tensor (..., xˢ, [yˢ], [vectorᶜ])` as cached; extra batch dims (`time`, `batch`) are kept.
        metadata: The sim's metadata, as returned with `DataManager.load_phiml_cache`.
        name: The field name, a key of `metadata['fields']`.

    Returns:
        `CenteredGrid`, or for staggered fields the `StaggeredGrid` whose faces `values` holds (`staggered_faces`);
        the wall slots of `zero` boundaries are not read, since the boundary condition fixes those faces at 0.
    """
    if name not in metadata['fields']:
        raise KeyError(f"No field '{name}' in metadata; available: {sorted(metadata['fields'])}")
    spec = FieldSpec(**metadata['fields'][name])
    boundary = BOUNDARIES[spec.boundary]
    bounds = Box(**{k: tuple(v) for k, v in metadata['bounds'].items()})
    if spec.grid != 'staggered':
        return CenteredGrid(values, boundary, bounds=bounds)
    components = values.shape.get_item_names('vector')
    wall = spec.boundary == 'zero'  # index 0 along each component's own axis is the wall face
    faces = [values.vector[d][{d: slice(1, None)}] if wall else values.vector[d] for d in components]
    faces = math.stack(faces, dual(vector=','.join(components)))
    return StaggeredGrid(faces, boundary, bounds=bounds, **metadata['resolution'])
