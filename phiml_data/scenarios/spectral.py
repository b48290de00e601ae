"""Pseudo-spectral numerics in PhiML: runs on NumPy, torch and JAX, differentiable, compilable."""

from __future__ import annotations

import math as pymath

from phiml import math
from phiml.math import Tensor, channel, instance, spatial

from .._phiml import irfft, rfft, scan


def spectral_burgers(u: Tensor, h: float, substeps: int, viscosity, length: float) -> Tensor:
    """`substeps` exponential time-differencing RK2 steps (ETDRK2, Cox & Matthews 2002) of size `h` of
    `u_t + (u·∇)u = ν∇²u`, periodic on `[0, length)^d` (d = 1, 2), pseudo-spectral with real FFTs (`_phiml.rfft`) and
    the 2/3 dealiasing rule: the viscous term exactly, the advection in rotational form (`(u·∇)u = ∇|u|²/2 - u × ω`,
    the same operator) with two evaluations per step, the coefficients
    `φ1(z) = (e^z - 1) / z` and `φ2(z) = (e^z - 1 - z) / z²` by contour integrals (Kassam & Trefethen 2005), so they
    stay accurate at `z = 0` and differentiable in `ν`. PhiML code: runs on NumPy, torch and JAX, passes gradients (to
    `u` and to `viscosity`, which may be a tensor) and compiles with `math.jit_compile`.

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
    if space.rank > 2:
        raise NotImplementedError("spectral_burgers: 1D and 2D (where the rotational form's curl is a scalar)")
    u = math.to_float(u)
    k = _wavenumbers(space, length)  # (..modes.., deriv) on the real-FFT grid
    cutoff = math.tensor([(2 / 3) * pymath.pi * n / length for n in space.sizes], channel(deriv=space.names))
    keep = math.all(abs(k) < cutoff, 'deriv')
    z = -viscosity * math.sum(k**2, 'deriv') * h
    e, (phi1, phi2) = math.exp(z), _phi(z)
    h_phi1, h_phi2 = h * phi1, h * phi2
    k_vector = math.rename_dims(k, 'deriv', u.shape['vector'])

    def nonlinear(uh):  # -(u·∇)u = -∇(|u|²/2) + u × (∇ × u): 3 real FFTs per evaluation in 1D, 6 in 2D (not 8)
        values = irfft(uh, space)
        energy = rfft(math.sum(values**2, 'vector') / 2, space)
        result = -1j * k_vector * energy
        if space.rank == 2:
            vorticity = irfft(1j * (k_vector.vector[0] * uh.vector[1] - k_vector.vector[1] * uh.vector[0]), space)
            turn = math.stack([values.vector[1] * vorticity, -values.vector[0] * vorticity], u.shape['vector'])
            result = result + rfft(turn, space)
        return result * keep

    def substep(uh):
        n0 = nonlinear(uh)
        a = e * uh + h_phi1 * n0
        return a + h_phi2 * (nonlinear(a) - n0)

    return irfft(scan(substep, substeps, rfft(u, space) * keep), space)


def _wavenumbers(space, length: float) -> Tensor:
    """`Tensor (..modes.., derivᶜ)`: the angular wavenumbers of the real-FFT grid of `space` (the last dim halved)."""
    last = space.names[-1]
    parts = []
    for d, n in zip(space.names, space.sizes):
        count = n // 2 + 1 if d == last else n
        values = [i if i < n / 2 or d == last else i - n for i in range(count)]
        parts.append(math.tensor([2 * pymath.pi * v / length for v in values], spatial(**{d: count})))
    return math.stack(parts, channel(deriv=space.names), expand_values=True)


def _phi(z: Tensor, points: int = 32) -> tuple[Tensor, Tensor]:
    """`(φ1(z), φ2(z))` of the real `z <= 0`, each the mean over `points` points of a circle of radius 1 around `z`
    (the upper half, by symmetry), all at once along a dim `contourⁱ`."""
    angles = [pymath.pi * (j + 0.5) / points for j in range(points)]
    circle = math.tensor([complex(pymath.cos(a), pymath.sin(a)) for a in angles], instance(contour=points))
    r = z + circle
    exp_r = math.exp(r)
    phi1 = math.mean(math.real((exp_r - 1) / r), 'contour')
    return phi1, math.mean(math.real((exp_r - 1 - r) / r**2), 'contour')


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
