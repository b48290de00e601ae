"""Hybrid training: a network and the physical model trained in cycles, each also learning from the other's
predictions (the HYCO scheme: Liverani, Steynberg and Zuazua, arXiv 2509.14123).

Step 4 of the pipeline (scenarios -> manager -> dataset -> trainer). After a warm-up of the network, every cycle:

1. the physical model (`PhysicalTrainer`) fits its parameters to the real training windows, mixed (weight
   `physical_alpha`, by default `alpha`) with the network's predictions once the network has trained;
2. the physical model, now fitted, generates samples; the network trains on the real windows mixed (weight `alpha`)
   with them.

Where the samples start (`HybridConfig.exchange`):

- `'new_states'` (default, HYCO's agreement on states without data): the physical model simulates whole
  trajectories from fresh initial conditions drawn from the scenario's own distribution (sim indices `>=
  NEW_STATE_INDEX`, never in any split), cut into windows like the data; the network predicts from the same
  states;
- `'windows'` (the legacy project's exchange): both models predict from the real training windows' initial states.

Generated samples enter only the training windows (`fit(train=...)`): validation and test never see them. After the
warm-up and after every cycle both models and the cycle log are committed together (`hybrid/state.json` naming the
checkpoint folders of that phase), so a resumed run continues exactly, or fails with one clear error.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from phiml import math
from phiml.backend import NUMPY
from phiml.math import Tensor, batch, channel

from . import checkpoints
from .config import HybridConfig
from .dataset import PhiMLDataset
from .physical import PhysicalTrainer
from .scenarios import field_values
from .training import TrainedModel

NEW_STATE_INDEX = 10**9  # fresh initial conditions of cycle c use sim indices NEW_STATE_INDEX + c * new_states + k


def new_state_indices(config: HybridConfig, cycle: int) -> list[int]:
    """Sim indices of the fresh initial conditions of cycle `cycle` (0-based); `[]` for `exchange='windows'`."""
    if config.exchange != 'new_states':
        return []
    return [NEW_STATE_INDEX + cycle * config.new_states + k for k in range(config.new_states)]


def initial_frames(dataset: PhiMLDataset, indices: list[int]) -> Tensor:
    """The first frames of sims `indices` drawn from the scenario's own initial-condition distribution (its per-sim
    generator: nothing is cached), on the cache's grid, packed and normalised as `dataset`'s inputs:
    `Tensor (batchᵇ, xˢ, [yˢ], channelsᶜ=inputs)` (NumPy)."""
    scenario, frames = dataset.scenario, []
    for i in indices:
        state = scenario.initial_state(i)
        values = {f: scenario.stored(field_values(state[f])) for f in dataset.layout.inputs}
        frames.append(dataset.layout.pack(values))
    return dataset.normalized(math.stack(frames, batch('batch')))


def trajectory_windows(model: TrainedModel, dataset: PhiMLDataset, indices: list[int]) -> tuple[Tensor, Tensor]:
    """Windows (every `hop`-th start, like the data) of `model`'s trajectories from the fresh initial conditions
    `indices`, as generated samples `(initial_state, targets)` in physical units with `windowᵇ`."""
    lay, hop, frames = dataset.layout, dataset.config.hop, dataset.scenario.frames
    start = initial_frames(dataset, indices)
    with model.backend, model.surrogate.eval_mode():
        state = math.convert(start, model.backend)
        if lay.n_input > 1:
            state = math.expand(state, channel(history=lay.n_input))  # a resting history before the first frame
        rolled = math.stop_gradient(model.rollout(state, frames - 1))
    targets_all = math.concat([math.expand(start.channels[dataset.target_channels], batch(time=1)), rolled], 'time')
    static = start.channels[[c for c in dataset.input_channels if c not in dataset.target_channels]]
    initial, targets = [], []
    for s in range(0, frames - lay.window_length + 1, hop):
        window = targets_all.time[s : s + lay.window_length]
        inputs = window.time[: lay.n_input]
        if static.shape.get_size('channels'):
            inputs = math.concat([inputs, math.expand(static, inputs.shape['time'])], 'channels')
        inputs = inputs.channels[dataset.input_channels]
        inputs = math.rename_dims(inputs, 'time', channel('history')) if lay.n_input > 1 else inputs.time[0]
        initial.append(inputs)
        targets.append(window.time[lay.n_input :])
    merge = lambda parts: math.pack_dims(math.stack(parts, batch('start')), 'start,batch', batch('window'))
    return dataset.denormalize(merge(initial)), dataset.denormalize(math.convert(merge(targets), NUMPY))


def predictions(model: TrainedModel, dataset: PhiMLDataset, initial_state: Tensor = None) -> tuple[Tensor, Tensor]:
    """`model`'s rollout of `n_targets` steps from every window of `dataset` (in window order, no augmentation), or
    from the given normalised `initial_state (windowᵇ, ...)`, as generated samples.

    Returns:
        `(initial_state, targets)` in physical units with `windowᵇ` for `batchᵇ`: `PhiMLDataset(generated=...)`.
        Held in memory.
    """
    if initial_state is None:
        plain = dataset.variant(shuffle=False, augment=False, prefetch=0)
        states = [b['initial_state'] for b in plain.iterate_batches(epoch=0)]
        initial_state = math.rename_dims(math.concat(states, 'batch'), 'batch', batch('window'))
    parts = []
    with model.backend, model.surrogate.eval_mode():
        for k in range(0, initial_state.shape.get_size('window'), dataset.config.batch_size):
            chunk = math.rename_dims(initial_state.window[k : k + dataset.config.batch_size], 'window', batch('batch'))
            pred = math.stop_gradient(model.rollout(math.convert(chunk, model.backend), dataset.layout.n_targets))
            parts.append(math.convert(pred, NUMPY))
    targets = math.rename_dims(math.concat(parts, 'batch'), 'batch', batch('window'))
    return dataset.denormalize(initial_state), dataset.denormalize(targets)


class HybridTrainer:
    """Warm-up, then cycles of physical and network training that exchange generated samples.

    Args:
        network: The network's `Trainer` (its `train` dataset: the real training windows).
        physical: The `PhysicalTrainer` on the same training windows.
        config: `HybridConfig`.
        output: Folder for the cycle commits (`state.json` and the checkpoint folders it names); `None` keeps nothing.

    Attributes:
        mixed: The training sets of the last cycle, `{'network': PhiMLDataset, 'physical': PhiMLDataset}` (real
            windows with the other model's samples mixed in).
        log: One record per phase (warm-up, cycles): epochs, parameters, losses, generated windows.
    """

    def __init__(self, network, physical: PhysicalTrainer, config=HybridConfig(), output=None):
        self.network, self.physical, self.config = network, physical, config
        self.real = network.train
        self.output = Path(output) if output else None
        self.cycle, self.log, self.mixed = 0, [], {}

    def mix(self, generated: tuple[Tensor, Tensor], alpha: float) -> PhiMLDataset:
        """The real training windows with `generated` mixed in as a fraction `alpha` of each epoch."""
        return self.real.variant(generated=generated, alpha=alpha)

    def physical_samples(self) -> tuple[Tensor, Tensor]:
        """The physical model's samples for the network: windows of its trajectories from this cycle's fresh initial
        conditions, or its rollouts from the real windows (`exchange='windows'`)."""
        indices = new_state_indices(self.config, self.cycle)
        if indices:
            return trajectory_windows(self.physical, self.real, indices)
        return predictions(self.physical, self.real)

    def network_samples(self) -> tuple[Tensor, Tensor]:
        """The network's samples for the physical model, from the states of `physical_samples` (the real windows'
        initial states with `exchange='windows'`)."""
        if self.config.exchange == 'new_states':
            return predictions(self.network, self.real, self.real.normalized(self.physical_samples()[0]))
        return predictions(self.network, self.real)

    def fit(self) -> list[dict]:
        """Runs (or continues) warm-up and cycles; returns the log of phases."""
        c = self.config
        if self.network.epoch < c.warmup_epochs:
            self.network.fit(c.warmup_epochs)
            self._record('warmup')
        while self.cycle < c.cycles:
            if self.network.epoch and c.physical_fraction:
                self.mixed['physical'] = self.mix(self.network_samples(), c.physical_fraction)
            else:
                self.mixed['physical'] = self.real
            self.physical.fit((self.cycle + 1) * c.physical_epochs, train=self.mixed['physical'])
            self.mixed['network'] = self.mix(self.physical_samples(), c.alpha)  # only from the fitted physical model
            self.network.fit(c.warmup_epochs + (self.cycle + 1) * c.network_epochs, train=self.mixed['network'])
            self.cycle += 1
            self._record(f'cycle {self.cycle}')
        return self.log

    def _record(self, phase: str):
        self.log.append(
            {
                'phase': phase,
                'network_epoch': self.network.epoch,
                'physical_epoch': self.physical.epoch,
                'params': self.physical.params(),
                'network_train_loss': self.network.history[-1]['train_loss'] if self.network.history else None,
                'physical_train_loss': self.physical.history[-1]['train_loss'] if self.physical.history else None,
                'generated_per_epoch': self.mixed['network'].n_generated() if 'network' in self.mixed else 0,
                'new_states': new_state_indices(self.config, self.cycle - 1) if self.cycle else [],
            }
        )
        if self.output is not None:
            self._commit()

    def identity(self) -> dict:
        """What a hybrid commit belongs to: the hybrid config (but `cycles`: a run may be continued for more)."""
        return {'kind': 'hybrid', 'hybrid': {k: v for k, v in dataclasses.asdict(self.config).items() if k != 'cycles'}}

    def _commit(self):
        """Both models' checkpoints into folders of this phase, then `state.json` naming them (the commit), then the
        folders of earlier phases are removed."""
        tag = f'{len(self.log):04d}'
        folders = {'network': f'network-{tag}', 'physical': f'physical-{tag}'}
        self.network.save_checkpoint(self.output / folders['network'])
        self.physical.save_checkpoint(self.output / folders['physical'])
        state = {'cycle': self.cycle, 'log': self.log, 'folders': folders}
        checkpoints.commit(self.output, state, identity=self.identity())
        for path in self.output.iterdir():
            if path.is_dir() and path.name not in folders.values():
                shutil.rmtree(path, ignore_errors=True)

    def resume(self, path) -> HybridTrainer:
        """Continues from the commit a run with the same configs wrote to `path` (its `output`).

        Raises:
            CheckpointError: Missing, damaged, or of another hybrid, network or physical configuration.
        """
        path = Path(path)
        state, _ = checkpoints.read(path, self.identity(), 'hybrid checkpoint')
        self.network.load_checkpoint(path / state['folders']['network'])
        self.physical.load_checkpoint(path / state['folders']['physical'])
        self.cycle, self.log = state['cycle'], state['log']
        return self
