"""The surrogate: a network that advances packed states one step, and its autoregressive rollout.

Part of step 4 of the pipeline (scenarios -> manager -> dataset -> trainer). The network predicts the change of the
dynamic channels over one step, added to the last frame (persistence) or to the scenario's own solver on the cache's
grid (`solver_step`: a learned correction of a coarse solver, with or without gradients through the solver); a rollout applies it repeatedly, feeding its own
prediction back, with static channels (e.g. an inflow mask) re-attached at every step. It runs on batches exactly as
`PhiMLDataset` yields them.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Callable

from phiml import math
from phiml.math import Tensor, channel

from . import normalization
from ._windows import last_frame
from .dataset import PhiMLDataset
from .scenarios import step_values


class Surrogate:
    """A `phiml.nn` network (any backend) applied to named batches.

    Args:
        net: The network: `in_channels = len(input_channels) * n_input`, `out_channels = len(target_channels)`.
        input_channels: Item names of `initial_state`'s `channels` dim, e.g. `['velocity.x', 'velocity.y', 'inflow']`.
        target_channels: Item names of the predicted (dynamic) channels.
        backend: The PhiML backend the network belongs to; every call runs inside its context.
        reattach_static: Re-attach the static input channels at every step (else they are zeroed after the first).
        base: What the network's output is added to, given the last input frame `Tensor (batchᵇ, xˢ, [yˢ],
            channelsᶜ=inputs)` (static channels too), returning `Tensor (batchᵇ, xˢ, [yˢ], channelsᶜ=targets)`:
            `None` for the frame's target channels themselves (persistence), or e.g. `solver_step(...)`.
        scale: What the network's output is multiplied by: `Tensor (channelsᶜ=targets)` (one size for every state,
            `correction_scale`), a function of the last input frame returning `Tensor (batchᵇ)` (a size that follows
            the state, `StateScale`), or `None`.
    """

    def __init__(
        self,
        net,
        input_channels: list[str],
        target_channels: list[str],
        backend,
        reattach_static: bool = True,
        base: Callable[[Tensor], Tensor] = None,
        scale: Tensor = None,
    ):
        self.net, self.backend, self.reattach_static, self.base = net, backend, reattach_static, base
        self.scale = scale if scale is None or callable(scale) else math.convert(scale, backend)
        self.input_channels, self.target_channels = list(input_channels), list(target_channels)
        self.static_channels = [c for c in self.input_channels if c not in self.target_channels]

    def step(self, state: Tensor, correct: bool = None) -> Tensor:
        """One step: `Tensor (batchᵇ, [historyᶜ], xˢ, [yˢ], channelsᶜ=inputs)` -> next frame
        `Tensor (batchᵇ, xˢ, [yˢ], channelsᶜ=targets)` (normalised units); `correct=False` (the default without a
        network): the base alone."""
        with self.backend:
            last = last_frame(state)
            base = last.channels[self.target_channels] if self.base is None else self.base(last)
            if not (self.net is not None if correct is None else correct):
                return base
            delta = math.native_call(self.net, state)
            delta = math.rename_dims(delta, delta.shape.channel, channel(channels=','.join(self.target_channels)))
            if self.scale is None:
                return base + delta
            return base + delta * (self.scale(last) if callable(self.scale) else self.scale)

    def rollout(self, initial_state: Tensor, steps: int, correct: bool = None) -> Tensor:
        """Applies the network `steps` times, feeding predictions back.

        Args:
            initial_state: `Tensor (batchᵇ, [historyᶜ], xˢ, [yˢ], channelsᶜ=inputs)` as in a batch.
            steps: Rollout length.
            correct: `False`: roll out the base alone (persistence or the coarse solver), without the network; by
                default the network corrects the base if there is one.

        Returns:
            `Tensor (batchᵇ, timeᵇ=steps, xˢ, [yˢ], channelsᶜ=targets)`.
        """
        with self.backend:
            state, frames = initial_state, []
            for _ in range(steps):
                pred = self.step(state, correct)
                frames.append(pred)
                state = self.next_state(state, pred, initial_state)
            return math.stack(frames, math.batch('time'))

    def next_state(self, state: Tensor, pred: Tensor, initial_state: Tensor) -> Tensor:
        """The input of the next step: `pred`, the static channels of `initial_state`, the history shifted by one."""
        new = pred
        if self.static_channels:
            static = last_frame(initial_state).channels[self.static_channels]
            new = math.concat([pred, static if self.reattach_static else static * 0], 'channels')
        new = new.channels[self.input_channels]
        if 'history' in state.shape:
            new = math.concat([state.history[1:], math.expand(new, channel(history=1))], 'history')
        return new

    @contextlib.contextmanager
    def eval_mode(self):
        """Torch modules use running statistics (BatchNorm) inside the block; other backends need nothing."""
        if not hasattr(self.net, 'eval'):
            yield
            return
        self.net.eval()
        try:
            yield
        finally:
            self.net.train()


def correction_scale(dataset: PhiMLDataset, base: Callable[[Tensor], Tensor] = None, max_batches: int = 16) -> Tensor:
    """Per target channel, the rms over training windows (the first `max_batches` batches of epoch 0) of the one-step
    error of `base` (`None`: persistence) in `dataset`'s normalised units: the size of the correction a network must
    learn. Scaling the network's output by it lets the network learn corrections of unit size, so that its own
    output noise stays small next to an accurate base.

    Returns:
        `Tensor (channelsᶜ=targets)`.
    """
    total, count = 0, 0
    for b in itertools.islice(dataset.iterate_batches(epoch=0, prefetch=0), max_batches):
        last = last_frame(b['initial_state'])
        error = (b['targets'].time[0] - (last.channels[dataset.target_channels] if base is None else base(last))) ** 2
        total, count = (
            total + math.sum(error, error.shape.without('channels')),
            count + error.shape.without('channels').volume,
        )
    return math.maximum(math.sqrt(total / count), 1e-8)


def high_frequency_rms(frame: Tensor, channels: list[str], cutoff: float = 0.2) -> Tensor:
    """Per sample, the rms (over cells and `channels`) of the part of `frame` above `cutoff` cycles per cell (0.5 is
    the grid's Nyquist wavenumber): how much of the state lives near the grid scale, where a coarse solver errs.

    Returns:
        `Tensor` with the batch dims of `frame`.

    Example:
        >>> x = math.range(math.spatial(x=32)) * 2 * 3.14159 / 32
        >>> smooth = math.expand(math.sin(x), math.batch(batch=1), math.channel(channels='u'))
        >>> rough = math.expand(math.sin(12 * x), math.batch(batch=1), math.channel(channels='u'))
        >>> [round(float(high_frequency_rms(f, ['u']).batch[0]), 3) for f in (smooth, rough)]
        [0.0, 0.707]
    """
    values = frame.channels[channels]
    space = values.shape.spatial
    frequency = math.norm(math.fftfreq(space), 'vector')  # cycles per cell
    high = math.abs(math.fft(values, space)) ** 2 * (frequency > cutoff)
    return math.sqrt(math.mean(math.sum(high, space) / space.volume**2, 'channels'))


class StateScale:
    """A size of a base's one-step error that follows the state: `floor + slope * high_frequency_rms(frame)` per
    sample (normalised units), at most `cap`, fitted on the training windows (`fit`). The coarse solver's one-step
    error grows with the energy near the grid scale (about 600x along a 2D Burgers trajectory); this measure follows
    it within a factor of about 3 (5-95 % of the default config's training windows), so a network whose output is
    multiplied by it corrects early, smooth states by little and late, steep ones by much. The cap (the largest error
    on the training windows) keeps a rollout that leaves the training states from feeding its own grid-scale noise
    back into ever larger corrections. No gradient flows through it.

    Attributes:
        floor, slope, cap: The fitted coefficients.
        channels: The target channels the measure reads.
    """

    def __init__(self, floor: float, slope: float, cap: float, channels: list[str]):
        self.floor, self.slope, self.cap, self.channels = float(floor), float(slope), float(cap), list(channels)

    def __call__(self, frame: Tensor) -> Tensor:
        size = self.floor + self.slope * high_frequency_rms(frame, self.channels)
        return math.stop_gradient(math.minimum(size, self.cap))

    @staticmethod
    def fit(dataset: PhiMLDataset, base: Callable[[Tensor], Tensor] = None, max_batches: int = 16) -> StateScale:
        """Fits `floor` and `slope` to the rms one-step error of `base` (`None`: persistence) on the training windows
        (the first `max_batches` batches of epoch 0), least squares in log space over floors at error quantiles."""
        errors, measures = base_errors(dataset, base, max_batches)
        log_errors, measures = math.log(errors), math.maximum(measures, 1e-30)
        best = None
        for q in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3):
            floor = math.quantile(errors, q, 'window')
            slope = math.exp(math.median(math.log(math.maximum(errors - floor, 1e-30) / measures), 'window'))
            misfit = float(math.mean((log_errors - math.log(floor + slope * measures)) ** 2, 'window'))
            if best is None or misfit < best[0]:
                best = (misfit, float(floor), float(slope))
        return StateScale(best[1], best[2], float(math.max(errors, 'window')), dataset.target_channels)


def base_errors(dataset: PhiMLDataset, base: Callable[[Tensor], Tensor] = None, max_batches: int = 16):
    """Per training window (the first `max_batches` batches of epoch 0): the rms one-step error of `base` (`None`:
    persistence) and the `high_frequency_rms` of its initial frame: two `Tensor (windowᵇ)` (normalised units)."""
    errors, measures = [], []
    for b in itertools.islice(dataset.iterate_batches(epoch=0, prefetch=0), max_batches):
        last = last_frame(b['initial_state'])
        step = last.channels[dataset.target_channels] if base is None else base(last)
        errors.append(math.sqrt(math.mean((b['targets'].time[0] - step) ** 2, step.shape.non_batch)))
        measures.append(high_frequency_rms(last, dataset.target_channels))
    windows = lambda parts: math.rename_dims(math.concat(math.stop_gradient(parts), 'batch'), 'batch', 'window')
    return math.to_float(windows(errors)), math.to_float(windows(measures))


def solver_step(dataset: PhiMLDataset, gradient: bool = True) -> Callable[[Tensor], Tensor]:
    """The scenario's own solver on the cache's grid (`Scenario.coarse`) as one step from a packed input frame
    `Tensor (batchᵇ, xˢ, [yˢ], channelsᶜ=inputs)` to the next target frame `Tensor (batchᵇ, xˢ, [yˢ],
    channelsᶜ=targets)`, in `dataset`'s (normalised) units. It runs on the backend of the frame it is given (PhiML
    physics: no conversion), inside the training graph.

    Args:
        gradient: Let gradients flow through the solver (Solver-in-the-Loop training, "SOL"); `False` stops them
            at its input and output, so the network never sees how the solver reacts to its corrections ("NON").

    Raises:
        ValueError: The scenario has no coarser solver (its data were simulated on the cache's grid).
    """
    scenario = dataset.scenario
    coarse = scenario.coarse()
    if coarse is None:
        raise ValueError(
            f"model.base 'coarse_solver' needs ground truth simulated on a finer grid than the cache's (e.g. "
            f"scheme: spectral, refine: 4); scenario '{scenario.name}' solves on the cache's grid, so its solver "
            f"is the one that made the data"
        )
    return packed_step(dataset, coarse, gradient)


def packed_step(dataset: PhiMLDataset, solver, gradient: bool = True) -> Callable[..., Tensor]:
    """`solver`'s step from a packed input frame (static channels too) to the packed target frame, in `dataset`'s
    units: `step(frame, params=None)`, `params` the learnable parameters as tensors (`Scenario.step`).

    Without `params`, on torch or JAX and for a `jittable` solver, the step runs compiled (`math.jit_compile`, traced
    once per batch size): the same values, gradients through it too, a quarter of the time of the eager step on the
    default config (PhiML's per-operation overhead dominates on small grids)."""
    metadata, channels = solver.metadata(0), dataset.target_channels

    def step(frame: Tensor, params: dict = None) -> Tensor:
        values = step_values(solver, dataset.layout.unpack(dataset.denormalize(frame)), metadata, params)
        packed = math.stack([_channel(values, c) for c in channels], channel(channels=','.join(channels)))
        if dataset.config.normalize:
            packed = normalization.normalize(packed, dataset.stats, channels)
        return packed

    compiled = math.jit_compile(lambda frame: step(frame)) if solver.jittable else None

    def run(frame: Tensor, params: dict = None) -> Tensor:
        if compiled is not None and params is None and frame.default_backend.name != 'numpy':
            return compiled(frame)
        return step(frame, params)

    return run if gradient else lambda frame, params=None: math.stop_gradient(run(math.stop_gradient(frame), params))


def _channel(values: dict[str, Tensor], name: str) -> Tensor:
    """Channel `name` (`'velocity.x'`, `'density'`) of unpacked field values."""
    field, _, component = name.rpartition('.')
    return values[field].vector[component] if field else values[name]
