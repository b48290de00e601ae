"""The surrogate: a network that advances packed states one step, and its autoregressive rollout.

Part of step 4 of the pipeline (scenarios -> manager -> dataset -> trainer). The network predicts the change of the
dynamic channels over one step; a rollout applies it repeatedly, feeding its own prediction back, with static
channels (e.g. an inflow mask) re-attached at every step. It runs on batches exactly as `PhiMLDataset` yields them.
"""

from __future__ import annotations

import contextlib

from phiml import math
from phiml.math import Tensor, channel

from .dataset import last_frame


class Surrogate:
    """A `phiml.nn` network (any backend) applied to named batches.

    Args:
        net: The network: `in_channels = len(input_channels) * n_input`, `out_channels = len(target_channels)`.
        input_channels: Item names of `initial_state`'s `channels` dim, e.g. `['velocity.x', 'velocity.y', 'inflow']`.
        target_channels: Item names of the predicted (dynamic) channels.
        backend: The PhiML backend the network belongs to; every call runs inside its context.
        reattach_static: Re-attach the static input channels at every step (else they are zeroed after the first).
    """

    def __init__(
        self, net, input_channels: list[str], target_channels: list[str], backend, reattach_static: bool = True
    ):
        self.net, self.backend, self.reattach_static = net, backend, reattach_static
        self.input_channels, self.target_channels = list(input_channels), list(target_channels)
        self.static_channels = [c for c in self.input_channels if c not in self.target_channels]

    def step(self, state: Tensor) -> Tensor:
        """One step: `Tensor (batchᵇ, [historyᶜ], xˢ, [yˢ], channelsᶜ=inputs)` -> next frame
        `Tensor (batchᵇ, xˢ, [yˢ], channelsᶜ=targets)` (normalised units)."""
        with self.backend:
            delta = math.native_call(self.net, state)
            delta = math.rename_dims(delta, delta.shape.channel, channel(channels=','.join(self.target_channels)))
            return last_frame(state).channels[self.target_channels] + delta

    def rollout(self, initial_state: Tensor, steps: int) -> Tensor:
        """Applies the network `steps` times, feeding predictions back.

        Args:
            initial_state: `Tensor (batchᵇ, [historyᶜ], xˢ, [yˢ], channelsᶜ=inputs)` as in a batch.
            steps: Rollout length.

        Returns:
            `Tensor (batchᵇ, timeᵇ=steps, xˢ, [yˢ], channelsᶜ=targets)`.
        """
        with self.backend:
            state, frames = initial_state, []
            for _ in range(steps):
                pred = self.step(state)
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
