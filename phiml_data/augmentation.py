"""Symmetry augmentation of packed windows, derived from named dims and boundary metadata.

Each augmentation is a registered `Augmentation` (one class each); a drawn `Transform` composes them in registration
order, `shift ∘ flip ∘ swap`:
- `swap` exchanges the `x` and `y` axes (and the `.x` / `.y` vector components); with flips this gives all
  eight 90-degree rotations and reflections of a square;
- `flip` along an axis reverses it (cell centre `i -> n-1-i`) and negates that vector component; a staggered
  field's component along that axis lives on lower faces (`scenarios.staggered_faces`: face `i -> n-i`), so it is
  reversed and rolled by one cell;
- `shift` rolls periodic axes (only axes that every field treats as periodic).

Which of these the physics allows is declared by the scenario (`Scenario.symmetries`); shifts follow from the
boundary metadata. All are applied in physical units, before normalisation. Adding an augmentation is one
`@register`ed subclass of `Augmentation` (`allowed`, `draw`, `apply`); `dataset.augment` then accepts its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .registry import Registry


class Augmentation:
    """One kind of symmetry transform.

    Attributes:
        name: What `DatasetConfig.augment` lists.
        per_sample: Applied to one sample at a time (e.g. rolls by a drawn distance); otherwise to every group of
            samples that drew the same value.
    """

    name: str = ''
    per_sample: bool = False

    def allowed(self, scenario) -> tuple:
        """The options this scenario allows (e.g. axes); `()` if none."""
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, allowed: tuple, resolution: dict):
        """A hashable value for one sample (its identity when nothing is drawn), from a per-sample generator."""
        raise NotImplementedError

    def apply(self, part: np.ndarray, channels: list[str], axis: dict, value, staggered: tuple) -> np.ndarray:
        """`part [B, ..., *spatial, C]` transformed by `value`; `axis`: spatial dim -> array axis."""
        raise NotImplementedError


AUGMENTATIONS: Registry[Augmentation] = Registry('augmentation')  # registration order = order of application


def register(cls: type[Augmentation]) -> type[Augmentation]:
    """Class decorator: makes an `Augmentation` (an instance of `cls`) available under `cls.name`."""
    return AUGMENTATIONS.register(make=lambda c: c())(cls)


@register
class Swap(Augmentation):
    name = 'swap'

    def allowed(self, scenario):
        square = len(set(scenario.resolution)) == 1
        return ('x', 'y') if 'swap' in scenario.symmetries and square else ()

    def draw(self, rng, allowed, resolution):
        return bool(allowed and rng.integers(2))

    def apply(self, part, channels, axis, value, staggered):
        if not value:
            return part
        index = {c: i for i, c in enumerate(channels)}
        swapped = [_other_component(c) for c in channels]
        return np.swapaxes(part, axis['x'], axis['y'])[..., [index[c] for c in swapped]]


@register
class Flip(Augmentation):
    name = 'flip'

    def allowed(self, scenario):
        return tuple(a for a in scenario.symmetries if a in scenario.spatial_dims)

    def draw(self, rng, allowed, resolution):
        return tuple(a for a in allowed if rng.integers(2))

    def apply(self, part, channels, axis, value, staggered):
        if not value:
            return part
        part = np.flip(part, axis=[axis[a] for a in value])
        components = [c.rpartition('.') for c in channels]
        sign = np.array([-1.0 if f and comp in value else 1.0 for f, _, comp in components], np.float32)
        part = part * sign
        for c, (f, _, comp) in enumerate(components):
            if f in staggered and comp in value:  # lower faces: i -> n - i
                part[..., c] = np.roll(part[..., c], 1, axis=axis[comp])
        return part


@register
class Shift(Augmentation):
    name = 'shift'
    per_sample = True

    def allowed(self, scenario):
        return tuple(scenario.spatial_dims) if scenario.all_periodic else ()

    def draw(self, rng, allowed, resolution):
        return tuple((a, int(rng.integers(resolution[a]))) for a in allowed)

    def apply(self, part, channels, axis, value, staggered):
        if not value:
            return part
        return np.roll(part, [s for _, s in value], axis=[axis[a] for a, _ in value])


def _other_component(channel: str) -> str:
    f, _, comp = channel.rpartition('.')
    return f"{f}.{'y' if comp == 'x' else 'x'}" if f and comp in ('x', 'y') else channel


@dataclass(frozen=True)
class Symmetries:
    """The transforms a dataset may draw from.

    Attributes:
        allowed: `{augmentation name: its allowed options}` for the chosen augmentations the scenario allows.
        staggered: Fields stored in the staggered face layout.
    """

    allowed: dict = field(default_factory=dict)
    staggered: tuple = ()

    @staticmethod
    def of(scenario, names=None) -> 'Symmetries':
        """The augmentations `names` (default: every registered one) with what the scenario allows: its declared
        flips / swap, shifts along axes periodic for every field.

        Example:
            >>> Symmetries.of(Burgers2D(), ('flip', 'shift')).allowed
            {'flip': ('x', 'y'), 'shift': ('x', 'y')}
        """
        names = tuple(AUGMENTATIONS) if names is None else tuple(AUGMENTATIONS.check(n) for n in names)
        allowed = {n: AUGMENTATIONS[n].allowed(scenario) for n in AUGMENTATIONS if n in names}
        return Symmetries(
            {n: a for n, a in allowed.items() if a},
            tuple(k for k, spec in scenario.fields.items() if spec.grid == 'staggered'),
        )


@dataclass(frozen=True)
class Transform:
    """One drawn transform: `{augmentation name: drawn value}` (a missing name: its identity).

    Example:
        >>> Transform.of(swap=True, flip=('x',)).values
        {'swap': True, 'flip': ('x',)}
    """

    values: dict

    @staticmethod
    def of(**values) -> 'Transform':
        return Transform(values)

    @staticmethod
    def draw(rng: np.random.Generator, sym: Symmetries, resolution: dict) -> 'Transform':
        return Transform({n: AUGMENTATIONS[n].draw(rng, a, resolution) for n, a in sym.allowed.items()})

    def key(self, per_sample: bool) -> tuple:
        """The drawn values of the augmentations applied per group (`per_sample=False`) or per sample."""
        return tuple((n, v) for n, v in self.values.items() if AUGMENTATIONS[n].per_sample == per_sample)


def apply(
    array: np.ndarray, channels: list[str], spatial: tuple, transforms: list[Transform], staggered: tuple = ()
) -> np.ndarray:
    """Applies one transform per sample to a packed array `[B, ..., *spatial, C]`, in registration order.

    Samples that drew the same values of the group-wise augmentations are transformed together; the per-sample
    ones (shifts) sample by sample. Channels of the fields named in `staggered` hold face values (`field.x` on
    x-faces, ...).
    """
    out = np.empty_like(array)
    axis = {a: array.ndim - 1 - len(spatial) + i for i, a in enumerate(spatial)}  # axes of the spatial dims
    keys = [t.key(per_sample=False) for t in transforms]
    for key in set(keys):
        rows = np.array([i for i, k in enumerate(keys) if k == key])
        out[rows] = _apply(array[rows], channels, axis, key, staggered)
    for i, t in enumerate(transforms):
        if t.key(per_sample=True):
            out[i : i + 1] = _apply(out[i : i + 1], channels, axis, t.key(per_sample=True), staggered)
    return out


def _apply(part, channels, axis, values: tuple, staggered) -> np.ndarray:
    drawn = dict(values)
    for name in (n for n in AUGMENTATIONS if n in drawn):
        part = AUGMENTATIONS[name].apply(part, channels, axis, drawn[name], staggered)
    return part
