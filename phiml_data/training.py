"""What every trainer shares: the `TrainedModel` protocol that evaluation and the training modes rely on, and
`EpochTrainer`, the epoch loop, validation, history and atomic checkpoints written once for all trainers.

Step 4 of the pipeline (scenarios -> manager -> dataset -> trainer). `Trainer` (a network, `trainer.py`) and
`PhysicalTrainer` (the PDE's learnable parameters, `physical.py`) are `EpochTrainer`s; `HybridTrainer` drives two of
them through `fit(epochs, train=...)`. A trainer only says what one epoch does (`_epoch`), how one batch is scored
(`batch_loss`), and what its state is (`_state`, `_parts`, `_restore`); this module does the rest.

Checkpoints (`checkpoints.commit`): after every epoch `output/checkpoints/last` and, when the validation loss (else
the training loss) improves, `output/checkpoints/best`, each one commit recording the cache key, the dataset config
and the trainer config; `load_checkpoint` refuses a checkpoint of another configuration in one line naming the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from phiml import math
from phiml.math import Tensor

from . import checkpoints
from .backends import backend_named
from .dataset import PhiMLDataset
from .manifest import write_json

RUNTIME_ONLY = {
    'dataset': ('mode', 'memory_limit', 'prefetch'),  # how windows are read, not which
    'trainer': ('progress', 'threads', 'epochs'),  # how a run shows, schedules and extends itself, not what it learns
}


@runtime_checkable
class TrainedModel(Protocol):
    """What evaluation, plots and the hybrid cycle need from a trained model (`Trainer`, `PhysicalTrainer`).

    Attributes:
        train: The training dataset: layout, normalisation statistics, scenario.
        history: One record per epoch (`'epoch'`, `'train_loss'`, `'val_loss'`, ...).
        backend: The PhiML backend the model computes on.
        surrogate: What predicts one step (`surrogate.Surrogate`).
    """

    train: PhiMLDataset
    history: list
    backend: object

    @property
    def surrogate(self): ...

    def rollout(self, initial_state: Tensor, steps: int) -> Tensor: ...

    def save_checkpoint(self, path): ...

    def load_checkpoint(self, path): ...


class EpochTrainer:
    """Base of the trainers: datasets, backend, history, the epoch loop, validation and checkpoints.

    Args:
        train: Training windows (normalised batches are used as they come).
        val: Optional validation windows, normalised with `train`'s statistics.
        config: The trainer's frozen config dataclass (recorded in checkpoints).
        backend: `'torch'` or `'jax'`: where the model computes.
        output: Folder for `history.json` and `checkpoints/{last,best}`; `None` keeps nothing on disk.
    """

    kind: ClassVar[str] = ''  # 'network', 'physical': recorded in checkpoints, named in messages

    def __init__(self, train: PhiMLDataset, val: PhiMLDataset, config, backend: str, output=None):
        if val is not None and val.config.normalize and val.stats != train.stats:
            raise ValueError(
                "The validation dataset normalises with other statistics than the training split "
                "(it computed its own?): build it with stats=train.stats (or train.variant(sims=...))"
            )
        self.train, self.val, self.config = train, val, config
        self.output = Path(output) if output else None
        self.backend = backend_named(backend)
        self.history: list[dict] = []
        self.epoch = 0
        self.rank = 0  # data-parallel trainers: only rank 0 writes

    # --- what a trainer defines (and `surrogate`, the `Surrogate` of the current model) ---

    def _epoch(self, train: PhiMLDataset) -> dict:
        """One epoch of updates on `train`; returns its history record (without `'epoch'`)."""
        raise NotImplementedError

    def batch_loss(self, batch: dict, dataset: PhiMLDataset = None) -> Tensor:
        """The training loss of one batch (from `dataset`, if given) with the current model; a scalar."""
        raise NotImplementedError

    def _state(self) -> dict:
        """JSON-compatible state beyond epoch and history (e.g. parameters, the optimiser's step)."""
        return {}

    def _parts(self) -> dict:
        """Files of the state: `{name: write(path_stem) -> path}`."""
        return {}

    def _restore(self, state: dict, parts: dict[str, Path]):
        """Restores `_state()` and `_parts()`."""

    def _fitting(self):
        """Context around `fit` (e.g. thread counts)."""
        return contextlib.nullcontext()

    def _fitted(self):
        """Called after `fit` (e.g. to report on the fit)."""

    # --- shared ---

    def rollout(self, initial_state: Tensor, steps: int) -> Tensor:
        """`Surrogate.rollout` of the current model: `Tensor (batchᵇ, timeᵇ=steps, xˢ, [yˢ], channelsᶜ=targets)`."""
        return self.surrogate.rollout(initial_state, steps)

    def fit(self, epochs: int = None, train: PhiMLDataset = None) -> list[dict]:
        """Trains until `epochs` (default `config.epochs`) epochs are done in total; returns the history.

        Args:
            train: The windows of these epochs (default: `self.train`), e.g. the training windows with generated
                samples mixed in (`HybridTrainer`); the same cache, layout and statistics as `self.train`.

        After every epoch: appends its record (`'epoch'`, `'train_loss'`, `'val_loss'`, ...) to the history and writes
        `history.json` and the checkpoints.
        """
        epochs = self.config.epochs if epochs is None else epochs
        train = self.train if train is None else train
        if train.stats != self.train.stats or train.layout != self.train.layout:
            raise ValueError("fit(train=...) needs the layout and statistics of the trainer's own training set")
        with self.backend, self._fitting():
            while self.epoch < epochs:
                record = {'epoch': self.epoch, **self._epoch(train)}
                self.history.append(record)
                self.epoch += 1
                self._save(record)
        self._fitted()
        return self.history

    def validate(self) -> float | None:
        """Mean loss over the validation windows (normalised units), or `None` without them."""
        if self.val is None:
            return None
        total, count = 0.0, 0
        with self.backend, self.surrogate.eval_mode():
            for b in self.val.iterate_batches(epoch=0):
                n = b['targets'].shape.get_size('batch')
                total, count = total + n * float(math.stop_gradient(self.batch_loss(b, self.val))), count + n
        return total / count

    # --- checkpoints ---

    def identity(self) -> dict:
        """What a checkpoint of this trainer belongs to: kind, cache key, training sims, dataset and trainer configs
        (without settings that change how, not what, it trains)."""
        plain = lambda config, section: {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(config).items()
            if k not in RUNTIME_ONLY[section]
        }
        return {
            'kind': self.kind,
            'cache_key': self.train.cache.key,
            'train_sims': list(self.train.sims),
            'dataset': plain(self.train.config, 'dataset'),
            'trainer': plain(self.config, 'trainer'),
        }

    def save_checkpoint(self, path):
        """Commits the training state to folder `path` (see `checkpoints`)."""
        state = {'epoch': self.epoch, 'history': self.history, **self._state()}
        with self.backend:
            checkpoints.commit(path, state, self._parts(), self.identity())

    def load_checkpoint(self, path):
        """Restores a checkpoint written by a trainer of the same configuration; `fit()` then continues from its
        epoch.

        Raises:
            CheckpointError: Missing, damaged, non-finite, or of another configuration (names file and key).
        """
        state, parts = checkpoints.read(path, self.identity(), f'{self.kind} checkpoint')
        with self.backend:
            self._restore(state, parts)
        self.epoch, self.history = state['epoch'], state['history']
        return self

    def restore_best(self):
        """Loads the model and optimizer state of `output/checkpoints/best` (what a run evaluates); `epoch` and
        `history` stay the whole run's, so that its record (steps, last losses, loss curves) covers every epoch.
        Data-parallel ranks other than 0, which write nothing, keep their (identical) last weights."""
        if self.output is not None and self.rank == 0:
            run = self.epoch, self.history
            self.load_checkpoint(self.output / 'checkpoints' / 'best')
            self.epoch, self.history = run
        return self

    def _save(self, record: dict):
        if self.output is None or self.rank != 0:
            return
        folder = self.output / 'checkpoints'
        self.save_checkpoint(folder / 'last')
        score = lambda r: r['val_loss'] if r['val_loss'] is not None else r['train_loss']
        if score(record) <= min(score(r) for r in self.history):
            self.save_checkpoint(folder / 'best')
        write_json(self.output / 'history.json', self.history)
