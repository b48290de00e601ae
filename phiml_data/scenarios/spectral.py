"""Pseudo-spectral numerics in PhiML: runs on NumPy, torch and JAX, differentiable, compilable."""

from __future__ import annotations

import math as pymath

from phiml import math
from phiml.math import Tensor, channel, spatial


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
        >>> import numpy as np
        >>> from phiml.math import channel, spatial
        >>> x = math.tensor((np.arange(64) + 0.5) * 2 * np.pi / 64, spatial('x'))
        >>> u = math.expand(math.sin(x), channel(vector='x'))  # a sine wave decays as exp(-ν t) until it steepens
        >>> out = spectral_burgers(0 * u + 1e-3 * u, 0.1, 10, 0.5, 2 * np.pi)
        >>> round(float(math.max(out) / math.max(1e-3 * u)), 4), round(float(np.exp(-0.5)), 4)
        (0.6065, 0.6065)
    """
    space = u.shape.spatial
    u = math.to_float(u)
    scale = math.tensor([2 * pymath.pi * n / length for n in space.sizes], channel(deriv=space.names))
    k = math.rename_dims(math.fftfreq(space), 'vector', channel(deriv=space.names)) * scale  # wavenumbers
    cutoff = math.tensor([(2 / 3) * pymath.pi * n / length for n in space.sizes], channel(deriv=space.names))
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


def points_from_cell_averages(u: Tensor, refine: int) -> Tensor:
    """Values at the cell centres of a grid `refine` times finer (per axis) of the periodic band-limited field whose
    cell averages on `u`'s grid are `u`: each Fourier mode is de-averaged (divided by the average of `e^{ikx}` over a
    cell, `sinc(k dx / 2)`), shifted to the fine cell centres and zero-padded (the inverse of `Burgers.stored` up to
    the modes the coarse grid cannot hold; its Nyquist mode is dropped). PhiML code: any backend, differentiable.

    Args:
        u: `Tensor (..., xˢ, [yˢ], [vectorᶜ])` of cell averages.

    Returns:
        `Tensor` with every spatial size `refine` times larger.

    Example:
        >>> import numpy as np
        >>> x = (np.arange(16) + 0.5) * 2 * np.pi / 16
        >>> averages = math.tensor((np.sin(x + np.pi / 16) - np.sin(x - np.pi / 16)) / (2 * np.pi / 16), spatial('x'))
        >>> fine = points_from_cell_averages(averages, 4)  # the average of cos over each cell -> cos at fine centres
        >>> xf = (np.arange(64) + 0.5) * 2 * np.pi / 64
        >>> float(np.abs(fine.numpy('x') - np.cos(xf)).max()) < 1e-5
        True
    """
    if refine == 1:
        return u
    values = math.to_float(u)
    uh = math.fft(values, values.shape.spatial)
    for dim in values.shape.spatial.names:
        n = values.shape.get_size(dim)
        k = math.tensor([i if i < n / 2 else i - n for i in range(n)], spatial(**{dim: n}))  # integer wavenumbers
        cell_average = math.where(k == 0, 1.0, math.sin(pymath.pi * k / n) / (pymath.pi * k / n + (k == 0)))
        shift = math.exp(-2j * pymath.pi * k * (refine - 1) / (2 * refine * n))  # to the fine cell centres
        uh = uh / cell_average * shift
        half = (n - 1) // 2  # modes -half..half; an even grid's Nyquist mode is dropped
        zeros = math.zeros(uh.shape.with_dim_size(dim, refine * n - 2 * half - 1)) * (0 * uh[{dim: 0}] + 1)
        uh = math.concat([uh[{dim: slice(0, half + 1)}], zeros, uh[{dim: slice(n - half, n)}]], dim)
    return math.real(math.ifft(uh, uh.shape.spatial)) * refine**values.shape.spatial.rank
