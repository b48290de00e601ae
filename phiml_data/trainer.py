"""Trainer: autoregressive training of `phiml.nn` networks on batches from `PhiMLDataset`.

Step 4 of the pipeline (scenarios -> manager -> dataset -> trainer). Batches are used exactly as the dataset
yields them: PhiML tensors go into the network via `math.native_call` and through the loss; nothing is converted.

The network predicts the change of the dynamic channels over one step; a rollout applies it `n_targets` times,
feeding its own prediction back (static channels such as an inflow mask are re-attached at every step).

Backends: `'torch'` (default; fastest on CPU here) and `'jax'`. The trainer changes no process-wide state behind the
caller: its methods run inside a PhiML backend context (`with backend:`), the initial weights come from a seeded,
forked RNG state, and the torch thread count (`TrainConfig.threads`) is set for `fit` and restored afterwards. PhiML 1.16.1's jax optimizer never advances
Adam's step counter and, under `jit_compile`, restarts every step from the initial weights; the jax path therefore
runs the update eagerly and advances the counter itself (`_jax_update`).
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from phiml import math, nn
from phiml.math import Tensor

from . import distributed
from ._phiml import adam_step, set_adam_step
from .architectures import ARCHITECTURES
from .backends import backend_named, seeded, threads
from .config import ModelConfig, TrainConfig  # noqa: F401  (also reachable as phiml_data.trainer.TrainConfig)
from .dataset import PhiMLDataset
from .losses import LOSSES
from .surrogate import Surrogate, correction_scale, solver_step


def build_network(model: ModelConfig, in_channels: int, out_channels: int, spatial_dims: int, periodic: bool):
    """The `phiml.nn` network `model` describes, for the current backend."""
    common = dict(batch_norm=model.batch_norm, activation=model.activation, in_spatial=spatial_dims, periodic=periodic)
    return ARCHITECTURES[model.architecture].build(model, in_channels, out_channels, common)


def _in_backend(method):
    """Runs a `Trainer` method inside its backend's context."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.backend:
            return method(self, *args, **kwargs)

    return wrapper


class Trainer:
    """Trains a network to roll out the windows of a `PhiMLDataset`.

    Args:
        train: Training dataset (normalised batches are used as they come).
        val: Optional validation dataset (same layout, training statistics).
        model: A `ModelConfig` to build the network from (seeded by `config.seed`), or a ready `phiml.nn` network of
            `config.backend` with `in_channels = len(train.input_channels) * n_input` and
            `out_channels = len(train.target_channels)` (e.g. `nn.res_net(...)` or your own torch module).
        config: Optimisation config.
        output: Folder for `history.json` and `checkpoints/` (best and last); `None` keeps nothing on disk.

    Data-parallel: inside an initialised `torch.distributed` process group (e.g. under `torchrun`), each rank passes
    its shard of the training set (`shard=(rank, world_size)`); gradients are averaged over the ranks every step,
    the logged training loss is the mean over the ranks, and only rank 0 writes files.

    Example:
        >>> dm = DataManager(tmp, Burgers2D(resolution=8, steps=4))
        >>> _ = dm.generate(3, progress=False)
        >>> train = PhiMLDataset(dm, [0, 1], n_targets=2)
        >>> val = PhiMLDataset(dm, [2], n_targets=2, stats=train.stats, shuffle=False)
        >>> trainer = Trainer(train, val, ModelConfig('conv_net', filters=4, layers=1), TrainConfig(epochs=2, progress=False))
        >>> [sorted(r)[:4] for r in trainer.fit()][-1]
        ['data_seconds', 'epoch', 'learning_rate', 'seconds']
    """

    def __init__(
        self,
        train: PhiMLDataset,
        val: PhiMLDataset = None,
        model=ModelConfig(),
        config: TrainConfig = TrainConfig(),
        output=None,
    ):
        self.train, self.val, self.config = train, val, config
        self.model_config = model if isinstance(model, ModelConfig) else None
        self.output = Path(output) if output else None
        if self.model_config:
            self.model_config.check_backend(config.backend)
        if val is not None and val.config.normalize and val.stats != train.stats:
            raise ValueError(
                "The validation dataset normalises with other statistics than the training split "
                "(it computed its own?): build it with stats=train.stats"
            )
        lay = train.layout
        dynamic_inputs = [f for f in lay.inputs if f not in lay.static]
        if list(lay.outputs) != dynamic_inputs:
            raise ValueError(
                f"An autoregressive rollout feeds predictions back: target fields {list(lay.outputs)} must be "
                f"the dynamic input fields {dynamic_inputs}"
            )
        self.backend = backend_named(config.backend)
        with self.backend, seeded(self.backend, config.seed):
            net = model
            if self.model_config:
                periodic = train.manager.scenario.all_periodic
                net = build_network(
                    model,
                    len(train.input_channels) * lay.n_input,
                    len(train.target_channels),
                    len(lay.spatial),
                    periodic,
                )
            self.optimizer = nn.adam(net, learning_rate=config.learning_rate)
        with self.backend:
            coarse = self.model_config and model.base == 'coarse_solver'
            base = solver_step(train, config.solver_gradient) if coarse else None
            scale = correction_scale(train, base) if self.model_config and model.scale_output else None
        self.surrogate = Surrogate(
            net, train.input_channels, train.target_channels, self.backend, config.reattach_static, base, scale
        )
        self.rank, self.world_size = _TRAINING[config.backend].ranks()
        if self.world_size > 1 and tuple(train.shard) != (self.rank, self.world_size):
            raise ValueError(
                f"Data-parallel training on {self.world_size} ranks: build the training dataset with "
                f"shard=({self.rank}, {self.world_size}), got shard={tuple(train.shard)}"
            )
        self.history: list[dict] = []
        self.epoch = 0

    # --- model application (the surrogate) ---

    @property
    def net(self):
        """The network being trained."""
        return self.surrogate.net

    def step(self, state: Tensor) -> Tensor:
        """`Surrogate.step` of the network being trained."""
        return self.surrogate.step(state)

    def rollout(self, initial_state: Tensor, steps: int) -> Tensor:
        """`Surrogate.rollout` of the network being trained: `Tensor (batchᵇ, timeᵇ=steps, xˢ, [yˢ], channelsᶜ=targets)`."""
        return self.surrogate.rollout(initial_state, steps)

    def loss(self, initial_state: Tensor, targets: Tensor) -> Tensor:
        """The rollout's error against `targets (batchᵇ, timeᵇ, xˢ, [yˢ], channelsᶜ)` as `config.loss` defines it;
        a scalar `Tensor`.

        Runs inside `fit` / `validate` (their backend context); it is not wrapped itself because `nn.update_weights`
        differentiates it by its signature.
        """
        steps = targets.shape.get_size('time')
        base = lambda: math.stop_gradient(self.surrogate.rollout(initial_state, steps, correct=False))
        return LOSSES[self.config.loss](self.rollout(initial_state, steps), targets, base)

    # --- training ---

    def fit(self, epochs: int = None) -> list[dict]:
        """Trains until `epochs` (default `config.epochs`) epochs are done in total; returns the history.

        After every epoch: appends `{'epoch', 'train_loss', 'val_loss', 'learning_rate', 'seconds', 'train_seconds',
        'data_seconds', 'steps'}` to the history (`data_seconds`: time spent waiting for the next batch, within
        `train_seconds`), writes `history.json` and the `last` checkpoint, and the `best` one when `val_loss` (else
        `train_loss`) improves.
        """
        from tqdm import tqdm

        epochs = self.config.epochs if epochs is None else epochs
        bar = tqdm(total=epochs, initial=self.epoch, desc='training', unit='epoch', disable=not self.config.progress)
        with self.backend, threads(self.backend, self.config.threads):
            while self.epoch < epochs:
                record = self._epoch()
                self.history.append(record)
                self.epoch += 1
                self._save(record)
                bar.set_postfix(train=f"{record['train_loss']:.4g}", val=f"{record['val_loss'] or float('nan'):.4g}")
                bar.update()
        bar.close()
        return self.history

    def _epoch(self) -> dict:
        """One epoch of updates and the validation; returns its history record."""
        update = _TRAINING[self.config.backend].update
        if self.world_size > 1:
            update = distributed.averaged_update
        t0, losses, wait = time.perf_counter(), [], 0.0
        lr = self.config.learning_rate * self.config.lr_decay**self.epoch
        if self.config.lr_decay != 1:
            nn.set_learning_rate(self.optimizer, lr)
        batches = iter(self.train.iterate_batches(epoch=self.epoch))
        while True:
            t = time.perf_counter()
            b = next(batches, None)
            wait += time.perf_counter() - t
            if b is None:
                break
            loss = update(self.net, self.optimizer, self.loss, b['initial_state'], b['targets'])
            losses.append(float(math.stop_gradient(loss)))
        t_train = time.perf_counter() - t0
        return {
            'epoch': self.epoch,
            'train_loss': distributed.mean_over_ranks(sum(losses) / len(losses)),
            'val_loss': self.validate(),
            'learning_rate': lr,
            'seconds': time.perf_counter() - t0,
            'train_seconds': t_train,
            'data_seconds': wait,
            'steps': len(losses),
        }

    @_in_backend
    def validate(self) -> float | None:
        """Mean rollout loss over the validation set (normalised units), or `None` without one."""
        if self.val is None:
            return None
        with self.surrogate.eval_mode():
            losses = [
                (
                    float(math.stop_gradient(self.loss(b['initial_state'], b['targets']))),
                    b['initial_state'].shape.get_size('batch'),
                )
                for b in self.val.iterate_batches(epoch=0)
            ]
        return sum(loss * n for loss, n in losses) / sum(n for _, n in losses)

    # --- checkpoints ---

    def _save(self, record: dict):
        if self.output is None or self.rank != 0:  # data-parallel: rank 0 writes for all (identical weights)
            return
        ckpt = self.output / 'checkpoints'
        ckpt.mkdir(parents=True, exist_ok=True)
        self.save_checkpoint(ckpt / 'last')
        score = lambda r: r['val_loss'] if r['val_loss'] is not None else r['train_loss']
        if score(record) <= min(score(r) for r in self.history):
            self.save_checkpoint(ckpt / 'best')
        (self.output / 'history.json').write_text(json.dumps(self.history, indent=1))

    @_in_backend
    def save_checkpoint(self, path):
        """Writes network, optimizer and training state to folder `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        files = {
            k: Path(nn.save_state(obj, str(path / k))).name
            for k, obj in (('net', self.net), ('optimizer', self.optimizer))
        }
        state = {
            'epoch': self.epoch,
            'history': self.history,
            'files': files,
            'model': asdict(self.model_config) if self.model_config else None,
            'training': asdict(self.config),
        }
        if _TRAINING[self.config.backend].keeps_adam_step:
            state['adam_step'] = adam_step(self.optimizer)
        (path / 'state.json').write_text(json.dumps(state, indent=1))

    @_in_backend
    def load_checkpoint(self, path):
        """Restores a checkpoint written by `save_checkpoint`; `fit()` then continues from its epoch."""
        path = Path(path)
        if not (path / 'state.json').exists():
            raise FileNotFoundError(f"No checkpoint in {path} (state.json missing)")
        state = json.loads((path / 'state.json').read_text())
        nn.load_state(self.net, str(path / state['files']['net']))
        nn.load_state(self.optimizer, str(path / state['files']['optimizer']))
        if 'adam_step' in state:
            set_adam_step(self.optimizer, state['adam_step'])
        self.epoch, self.history = state['epoch'], state['history']
        return self


def _jax_update(net, optimizer, loss_function, *args):
    """`nn.update_weights` for jax without phiml 1.16.1's bugs: eager update, Adam step counter advanced."""
    loss = nn.update_weights(net, optimizer, loss_function, *args)
    set_adam_step(optimizer, adam_step(optimizer) + 1)
    return loss


@dataclass(frozen=True)
class _Training:
    """What differs between training backends: the optimiser step, how ranks are found (torch.distributed only),
    and whether the Adam step counter must be saved beside the optimiser state (phiml 1.16.1's jax optimiser)."""

    update: Callable
    ranks: Callable[[], tuple[int, int]]
    keeps_adam_step: bool


_TRAINING = {
    'torch': _Training(nn.update_weights, distributed.rank_and_world, keeps_adam_step=False),
    'jax': _Training(_jax_update, lambda: (0, 1), keeps_adam_step=True),
}
