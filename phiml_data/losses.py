"""Training losses of a rollout, registered by name (`TrainConfig.loss`): adding one is one decorated function here.

Each takes the model's rollout `pred` and the `targets`, both `Tensor (batchᵇ, timeᵇ, xˢ, [yˢ], channelsᶜ)` in
normalised units, and `base()`, which rolls out the model's base alone (persistence or the coarse solver, no
gradient) for the losses that compare with it; it returns a scalar `Tensor`.
"""

from __future__ import annotations

from typing import Callable

from phiml import math
from phiml.math import Tensor

from .registry import Registry

LOSSES: Registry[Callable[[Tensor, Tensor, Callable[[], Tensor]], Tensor]] = Registry('loss')  # `training.loss`


def register(name: str):
    """Decorator: registers a loss function under `name` (refused if another loss has it)."""
    return LOSSES.register(name)


@register('mse')
def mse(pred: Tensor, targets: Tensor, base) -> Tensor:
    """The mean squared error over steps, cells and channels.

    Example:
        >>> t = math.ones(math.batch(batch=2, time=3), math.spatial(x=4), math.channel(channels='u'))
        >>> float(mse(t * 3, t, None))
        4.0
    """
    return math.mean((pred - targets) ** 2, math.shape(targets))


@register('relative')
def relative(pred: Tensor, targets: Tensor, base) -> Tensor:
    """Per window, step and channel, the squared error over the target's mean square (plus 1e-6), averaged: every
    window weighs the same, so states of small magnitude (a plume starting from rest) are learned as well."""
    cells = targets.shape.spatial
    error = math.mean((pred - targets) ** 2, cells) / (math.mean(targets**2, cells) + 1e-6)
    return math.mean(error, error.shape)


@register('over_base')
def over_base(pred: Tensor, targets: Tensor, base) -> Tensor:
    """Per window and step, the squared error over that of the model's base alone from the same state (plus 1e-4 of
    the target's mean square), averaged: where the base is nearly exact, any error is costly."""
    cells = targets.shape.spatial & targets.shape['channels']
    reference = math.mean((base() - targets) ** 2, cells) + 1e-4 * math.mean(targets**2, cells)
    return math.mean(math.mean((pred - targets) ** 2, cells) / reference, reference.shape)
