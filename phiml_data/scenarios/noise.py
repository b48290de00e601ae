"""Random initial conditions drawn from a per-sim NumPy generator: smooth periodic noise, and band-limited noise that
is the same continuous field on every grid."""

from __future__ import annotations

import numpy as np


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
