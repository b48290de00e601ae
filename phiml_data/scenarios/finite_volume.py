"""Finite-volume numerics in PhiML: conservative MUSCL advection of cell averages in a closed box."""

from __future__ import annotations

from phiml import math
from phiml.math import Tensor, extrapolation

from .fields import pad_zeros


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
        >>> from phiml.math import channel, spatial
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
            upper = pad_zeros(flux[{d: slice(1, None)}], d, 0, 1)  # ... and 0 on the upper wall
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
    return pad_zeros(flux[{d: slice(1, None)}], d, 1, 0)  # closed lower wall
