"""Training losses of a rollout, registered by name (`TrainConfig.loss`): adding one is one decorated function here.

Each takes the model's rollout `pred` and the `targets`, both `Tensor (batchᵇ, timeᵇ, xˢ, [yˢ], channelsᶜ)` in
normalised units, and a `LossContext` (the error of the model's base alone; a floor set from the data), and returns a
scalar `Tensor`. A loss that reads `context.base_error` is registered with `reads_base=True`, so that the trainer
rolls the base out once per window and remembers it (else the base is rolled out whenever the loss asks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from phiml import math
from phiml.math import Tensor

from .registry import Registry


@dataclass(frozen=True)
class LossContext:
    """What a loss may compare a rollout with.

    Attributes:
        base_error: Per window and step, the mean square error (`square_error`) of the model's base alone
            (persistence or the coarse solver, no gradient) rolled out from the same initial state: `Tensor (batchᵇ,
            timeᵇ)`, computed on demand.
        floor: A mean square error (normalised units) below which a window's error is not made relative to, set from
            the training data (`training.floor_quantile`); `None`: `1e-4` of the target's mean square.
        base_mse: The base's mean square one-step error over the training windows (normalised units), or `None`.
    """

    base_error: Callable[[], Tensor]
    floor: float | None = None
    base_mse: float | None = None


LOSSES: Registry[Callable[[Tensor, Tensor, LossContext], Tensor]] = Registry('loss')  # `training.loss`


def register(name: str, reads_base: bool = False):
    """Decorator: registers a loss function under `name` (refused if another loss has it); `reads_base`: it calls
    `context.base_error()` (stored as the function's `reads_base` attribute)."""

    def decorate(loss):
        loss.reads_base = reads_base
        return LOSSES.register(name)(loss)

    return decorate


def square_error(pred: Tensor, targets: Tensor) -> Tensor:
    """The mean squared error per window and step, over cells and channels: `Tensor (batchᵇ, timeᵇ)`.

    Example:
        >>> t = math.ones(math.batch(batch=2, time=3), math.spatial(x=4), math.channel(channels='u'))
        >>> square_error(t * 3, t).shape
        (batchᵇ=2, timeᵇ=3)
    """
    return math.mean((pred - targets) ** 2, targets.shape.spatial & targets.shape['channels'])


@register('mse')
def mse(pred: Tensor, targets: Tensor, context: LossContext) -> Tensor:
    """The mean squared error over steps, cells and channels.

    Example:
        >>> t = math.ones(math.batch(batch=2, time=3), math.spatial(x=4), math.channel(channels='u'))
        >>> float(mse(t * 3, t, LossContext(base_error=lambda: square_error(t, t))))
        4.0
    """
    return math.mean((pred - targets) ** 2, math.shape(targets))


@register('relative')
def relative(pred: Tensor, targets: Tensor, context: LossContext) -> Tensor:
    """Per window, step and channel, the squared error over the target's mean square (plus 1e-6), averaged: every
    window weighs the same, so states of small magnitude (a plume starting from rest) are learned as well."""
    cells = targets.shape.spatial
    error = math.mean((pred - targets) ** 2, cells) / (math.mean(targets**2, cells) + 1e-6)
    return math.mean(error, error.shape)


@register('over_base', reads_base=True)
def over_base(pred: Tensor, targets: Tensor, context: LossContext) -> Tensor:
    """Per window and step, the squared error over that of the model's base alone from the same state (plus the
    context's floor, by default 1e-4 of the target's mean square), averaged: where the base is nearly exact, any error
    is costly."""
    floor = 1e-4 * square_error(0 * targets, targets) if context.floor is None else context.floor
    reference = context.base_error() + floor
    return math.mean(square_error(pred, targets) / reference, reference.shape)


@register('balanced', reads_base=True)
def balanced(pred: Tensor, targets: Tensor, context: LossContext) -> Tensor:
    """The sum of two losses that are 1 for the base alone: the mean squared error over the base's mean square error
    on the training windows (dominated by the late, steep states, where the base errs most) and `over_base` (every
    window relative to the base's own error there: the early, smooth states, where the base is nearly exact). A
    correction trained on it gains on the late states without giving up the early ones."""
    scale = context.base_mse or float(math.mean(context.base_error(), 'batch,time'))
    return mse(pred, targets, context) / scale + over_base(pred, targets, context)
