"""Symmetry augmentation of packed windows, derived from named dims and boundary metadata.

A transform is a composition `shift ∘ flip ∘ swap`:
- `swap` exchanges the `x` and `y` axes (and the `.x` / `.y` vector components); with flips this gives all
  eight 90-degree rotations and reflections of a square;
- `flip` along an axis reverses it (cell centre `i -> n-1-i`) and negates that vector component; a staggered
  field's component along that axis lives on lower faces (`scenarios.staggered_faces`: face `i -> n-i`), so it is
  reversed and rolled by one cell;
- `shift` rolls periodic axes (only axes that every field treats as periodic).

Which of these the physics allows is declared by the scenario (`Scenario.symmetries`); shifts follow from the
boundary metadata. All are applied in physical units, before normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NAMES = ('flip', 'swap', 'shift')  # what `DatasetConfig.augment` may list; `True` means all of them


@dataclass(frozen=True)
class Symmetries:
    """The transforms a dataset may draw from.

    Attributes:
        flips: Spatial axes that may be reflected.
        swap: Whether `x` and `y` may be exchanged (square, isotropic domains).
        shifts: Periodic axes that may be rolled.
        staggered: Fields stored in the staggered face layout.
    """

    flips: tuple = ()
    swap: bool = False
    shifts: tuple = ()
    staggered: tuple = ()

    @staticmethod
    def of(scenario, names=NAMES) -> 'Symmetries':
        """The transforms `names` (a subset of `NAMES`) that the scenario allows: its declared flips / swap, shifts
        along axes periodic for every field.

        Example:
            >>> Symmetries.of(Burgers2D(), ('flip', 'shift'))
            Symmetries(flips=('x', 'y'), swap=False, shifts=('x', 'y'), staggered=())
        """
        unknown = [n for n in names if n not in NAMES]
        if unknown:
            raise ValueError(f"Unknown augmentation(s) {unknown}; valid: {list(NAMES)}")
        square = len(set(scenario.resolution)) == 1
        return Symmetries(
            flips=tuple(a for a in scenario.symmetries if a in scenario.spatial_dims) if 'flip' in names else (),
            swap='swap' in scenario.symmetries and square and 'swap' in names,
            shifts=tuple(scenario.spatial_dims) if scenario.all_periodic and 'shift' in names else (),
            staggered=tuple(k for k, spec in scenario.fields.items() if spec.grid == 'staggered'),
        )


@dataclass(frozen=True)
class Transform:
    """One drawn transform: `swap`, per-axis `flips`, per-axis integer `shifts` (cells)."""

    swap: bool
    flips: tuple
    shifts: tuple

    @staticmethod
    def draw(rng: np.random.Generator, sym: Symmetries, resolution: dict) -> 'Transform':
        swap = bool(sym.swap and rng.integers(2))
        flips = tuple(a for a in sym.flips if rng.integers(2))
        shifts = tuple((a, int(rng.integers(resolution[a]))) for a in sym.shifts)
        return Transform(swap, flips, shifts)

    @property
    def group_key(self):
        return self.swap, self.flips


def channel_action(channels: list[str], swap: bool, flips: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Permutation and sign of the channels under `flip ∘ swap`: `new = old[..., perm] * sign`."""
    index = {c: i for i, c in enumerate(channels)}
    perm, sign = [], []
    for c in channels:
        field, _, comp = c.rpartition('.')
        source = c
        if swap and field and comp in ('x', 'y'):
            source = f"{field}.{'y' if comp == 'x' else 'x'}"
        perm.append(index[source])
        sign.append(-1.0 if field and comp in flips else 1.0)
    return np.array(perm), np.array(sign, dtype=np.float32)


def apply(
    array: np.ndarray, channels: list[str], spatial: tuple, transforms: list[Transform], staggered: tuple = ()
) -> np.ndarray:
    """Applies one transform per sample to a packed array `[B, ..., *spatial, C]`.

    Samples sharing the same swap / flips are transformed together; shifts are rolled per sample. Channels of the
    fields named in `staggered` hold face values (`field.x` on x-faces, ...), which a flip along their own axis maps
    from face `i` to face `n - i`.
    """
    out = np.empty_like(array)
    axis = {a: array.ndim - 1 - len(spatial) + i for i, a in enumerate(spatial)}  # axes of the spatial dims
    keys = [t.group_key for t in transforms]
    for key in set(keys):
        swap, flips = key
        rows = np.array([i for i, k in enumerate(keys) if k == key])
        part = array[rows]
        if swap:
            part = np.swapaxes(part, axis['x'], axis['y'])
        if flips:
            part = np.flip(part, axis=[axis[a] for a in flips])
        perm, sign = channel_action(channels, swap, flips)
        part = part[..., perm] * sign
        for c, name in enumerate(channels):
            field, _, comp = name.rpartition('.')
            if field in staggered and comp in flips:
                part[..., c] = np.roll(part[..., c], 1, axis=axis[comp])
        out[rows] = part
    for i, t in enumerate(transforms):
        if t.shifts:
            out[i] = np.roll(out[i], [s for _, s in t.shifts], axis=[axis[a] - 1 for a, _ in t.shifts])
    return out
