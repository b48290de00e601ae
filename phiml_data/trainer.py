"""Trainer: autoregressive training of `phiml.nn` networks on batches from `PhiMLDataset`.

Step 4 of the pipeline (scenarios -> manager -> dataset -> trainer). Batches are used exactly as the dataset
yields them: PhiML tensors go into the network via `math.native_call` and through the loss; nothing is converted.

The network predicts the change of the dynamic channels over one step; a rollout applies it `n_targets` times,
feeding its own prediction back (static channels such as an inflow mask are re-attached at every step).

Backends: `'torch'` (default; fastest on CPU here) and `'jax'`. The trainer changes no process-wide state behind the
caller: its methods run inside a PhiML backend context (`with backend:`), the initial weights come from a seeded,
forked RNG state, and the torch thread count (`TrainConfig.threads`) is set for `fit` and restored afterwards. PhiML 1.16.1's jax optimizer never advances
Adam's step counter and, under `jit_compile`, restarts every step from the initial weights; the jax path therefore
runs the update eagerly and advances the counter itself (`backends.TRAINING_BACKENDS['jax']`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
import weakref
from typing import Callable

from phiml import math, nn
from phiml.math import Tensor

from . import distributed
from ._phiml import adam_step, set_adam_step
from .architectures import ARCHITECTURES, zero_output
from .backends import TRAINING_BACKENDS, seeded, threads
from .checkpoints import CheckpointError
from .config import ModelConfig, TrainConfig  # noqa: F401  (also reachable as phiml_data.trainer.TrainConfig)
from .dataset import PhiMLDataset
from .losses import LOSSES, LossContext, square_error
from .surrogate import StateScale, Surrogate, base_errors, correction_scale, solver_step
from .training import EpochTrainer


def build_network(model: ModelConfig, in_channels: int, out_channels: int, spatial_dims: int, periodic: bool):
    """The `phiml.nn` network `model` describes, for the current backend."""
    common = dict(batch_norm=model.batch_norm, activation=model.activation, in_spatial=spatial_dims, periodic=periodic)
    return ARCHITECTURES[model.architecture].build(model, in_channels, out_channels, common)


class Trainer(EpochTrainer):
    """Trains a network to roll out the windows of a `PhiMLDataset`.

    Args:
        train: Training dataset (normalised batches are used as they come).
        val: Optional validation dataset (same layout, training statistics).
        model: A `ModelConfig` to build the network from (seeded by `config.seed`), or a ready `phiml.nn` network of
            `config.backend` with `in_channels = len(train.input_channels) * n_input` and
            `out_channels = len(train.target_channels)` (e.g. `nn.res_net(...)` or your own torch module).
        config: Optimisation config.
        output: Folder for `history.json` and `checkpoints/` (best and last); `None` keeps nothing on disk.
        base: What the network's output is added to at each step, given the last frame `Tensor (batchᵇ, xˢ, [yˢ],
            channelsᶜ=targets)` in normalised units (e.g. `surrogate.solver_step(train)` or a fitted solver); default:
            `model.base` of a `ModelConfig` (persistence without one).

    Data-parallel: inside an initialised `torch.distributed` process group (e.g. under `torchrun`), each rank passes
    its shard of the training set (`shard=(rank, world_size)`); gradients are averaged over the ranks every step,
    the logged training loss is the mean over the ranks, and only rank 0 writes files.

    Example:
        >>> dm = DataManager(tmp, Burgers2D(resolution=8, steps=4))
        >>> _ = dm.generate(3, progress=False)
        >>> train = PhiMLDataset(dm, [0, 1], n_targets=2)
        >>> val = train.variant(sims=[2], shuffle=False)
        >>> trainer = Trainer(train, val, ModelConfig('conv_net', filters=4, layers=1), TrainConfig(epochs=2, progress=False))
        >>> [sorted(r)[:4] for r in trainer.fit()][-1]
        ['data_seconds', 'epoch', 'learning_rate', 'seconds']
    """

    kind = 'network'

    def __init__(
        self,
        train: PhiMLDataset,
        val: PhiMLDataset = None,
        model=ModelConfig(),
        config: TrainConfig = TrainConfig(),
        output=None,
        base: Callable[[Tensor], Tensor] = None,
    ):
        super().__init__(train, val, config, config.backend, output)
        self.model_config = model if isinstance(model, ModelConfig) else None
        if self.model_config:
            self.model_config.check_backend(config.backend)
        lay = train.layout
        dynamic_inputs = [f for f in lay.inputs if f not in lay.static]
        if list(lay.outputs) != dynamic_inputs:
            raise ValueError(
                f"An autoregressive rollout feeds predictions back: target fields {list(lay.outputs)} must be "
                f"the dynamic input fields {dynamic_inputs}"
            )
        with self.backend, seeded(self.backend, config.seed):
            net = model
            if self.model_config:
                periodic = train.scenario.all_periodic
                net = build_network(
                    model,
                    len(train.input_channels) * lay.n_input,
                    len(train.target_channels),
                    len(lay.spatial),
                    periodic,
                )
                if model.zero_init:
                    zero_output(net)
            self.optimizer = nn.adam(net, learning_rate=config.learning_rate)
        self.base_name = (
            'custom' if base is not None else self.model_config.base if self.model_config else 'persistence'
        )
        with self.backend:
            if base is None and self.base_name == 'coarse_solver':
                base = solver_step(train, config.solver_gradient)
            scaling = self.model_config.scale_output if self.model_config else 'none'
            fit = {'none': lambda *args: None, 'global': correction_scale, 'state': StateScale.fit}[scaling]
            scale = fit(train, base)
            self.floor = self.base_mse = None  # what the losses compare with, set from the data
            self._base_memo = weakref.WeakKeyDictionary()  # dataset -> {window id: Tensor (timeᵇ)}: `base_error`
            if config.floor_quantile is not None or config.loss == 'balanced':
                errors, _ = base_errors(train, base)
                self.base_mse = float(math.mean(errors**2, 'window'))
                if config.floor_quantile is not None:
                    self.floor = float(math.quantile(errors**2, config.floor_quantile, 'window'))
        self.surrogate = Surrogate(
            net, train.input_channels, train.target_channels, self.backend, config.reattach_static, base, scale
        )
        self.rank, self.world_size = TRAINING_BACKENDS[config.backend].ranks()
        if self.world_size > 1 and tuple(train.shard) != (self.rank, self.world_size):
            raise ValueError(
                f"Data-parallel training on {self.world_size} ranks: build the training dataset with "
                f"shard=({self.rank}, {self.world_size}), got shard={tuple(train.shard)}"
            )

    # --- model application (the surrogate) ---

    @property
    def net(self):
        """The network being trained."""
        return self.surrogate.net

    def step(self, state: Tensor) -> Tensor:
        """`Surrogate.step` of the network being trained."""
        return self.surrogate.step(state)

    def loss(self, initial_state: Tensor, targets: Tensor, base_error: Tensor = None) -> Tensor:
        """The rollout's error against `targets (batchᵇ, timeᵇ, xˢ, [yˢ], channelsᶜ)` as `config.loss` defines it;
        a scalar `Tensor`. `base_error`: `base_error(...)` of these windows if known (else rolled out on demand).

        Runs inside `fit` / `validate` (their backend context); it is not wrapped itself because `nn.update_weights`
        differentiates it by its signature.
        """
        steps = targets.shape.get_size('time')
        known = lambda: base_error
        rolled = lambda: self._rolled_base_error(initial_state, targets)
        context = LossContext(rolled if base_error is None else known, self.floor, self.base_mse)
        return LOSSES[self.config.loss](self.rollout(initial_state, steps), targets, context)

    def base_error(self, batch: dict, dataset: PhiMLDataset) -> Tensor:
        """Per window of `batch` (from `dataset`) and step, the mean square error of the base alone rolled out from
        its initial state: `Tensor (batchᵇ, timeᵇ)` (normalised units, no gradient). Rolled out once per window of
        `dataset` and then remembered (for later epochs and validations): the base is fixed, and an augmented window's
        error is its plain one's, because the augmentations are symmetries of the scenario and so of its solver
        (`tests/test_trainer.py` checks this in 1D and 2D)."""
        memo = self._base_memo.setdefault(dataset, {})
        ids = [int(i) for i in math.unstack(batch['window_ids'], 'batch')]
        if not all(i in memo for i in ids):
            error = self._rolled_base_error(batch['initial_state'], batch['targets'])
            memo.update({i: error.batch[k] for k, i in enumerate(ids)})
        return math.stack([memo[i] for i in ids], math.batch('batch'))

    def _rolled_base_error(self, initial_state: Tensor, targets: Tensor) -> Tensor:
        """`square_error` of the base alone rolled out from `initial_state`: `Tensor (batchᵇ, timeᵇ)`, no gradient."""
        rolled = self.surrogate.rollout(initial_state, targets.shape.get_size('time'), correct=False)
        return math.stop_gradient(square_error(rolled, targets))

    def _loss_args(self, batch: dict, dataset: PhiMLDataset = None) -> tuple:
        """The arguments of `loss` for `batch`: with `base_error` if the loss reads it, `dataset` is known and its
        augmentations are known symmetries of the base (none, or persistence or the scenario's own solver; a custom
        base is rolled out at every step)."""
        symmetric = dataset is not None and (self.base_name != 'custom' or dataset.symmetries is None)
        known = symmetric and getattr(LOSSES[self.config.loss], 'reads_base', False)
        return batch['initial_state'], batch['targets'], *([self.base_error(batch, dataset)] if known else [])

    def batch_loss(self, batch: dict, dataset: PhiMLDataset = None) -> Tensor:
        return self.loss(*self._loss_args(batch, dataset))

    # --- training ---

    def fit(self, epochs: int = None, train: PhiMLDataset = None) -> list[dict]:
        """Trains until `epochs` (default `config.epochs`) epochs are done in total; returns the history.

        After every epoch: appends `{'epoch', 'train_loss', 'val_loss', 'learning_rate', 'seconds', 'train_seconds',
        'data_seconds', 'steps'}` to the history (`data_seconds`: time spent waiting for the next batch, within
        `train_seconds`), writes `history.json` and the `last` checkpoint, and the `best` one when `val_loss` (else
        `train_loss`) improves. `train`: see `EpochTrainer.fit`.
        """
        from tqdm.auto import tqdm

        epochs = self.config.epochs if epochs is None else epochs
        self._bar = tqdm(
            total=epochs, initial=self.epoch, desc='training', unit='epoch', disable=not self.config.progress
        )
        try:
            return super().fit(epochs, train)
        finally:
            self._bar.close()

    def _fitting(self):
        return threads(self.backend, self.config.threads)

    def _epoch(self, train: PhiMLDataset) -> dict:
        """One epoch of updates and the validation; returns its history record."""
        update = TRAINING_BACKENDS[self.config.backend].update
        if self.world_size > 1:
            update = distributed.averaged_update
        t0, losses, wait = time.perf_counter(), [], 0.0
        lr = self.config.learning_rate * self.config.lr_decay**self.epoch
        if self.config.lr_decay != 1:
            nn.set_learning_rate(self.optimizer, lr)
        batches = iter(train.iterate_batches(epoch=self.epoch))
        while True:
            t = time.perf_counter()
            b = next(batches, None)
            wait += time.perf_counter() - t
            if b is None:
                break
            loss = update(self.net, self.optimizer, self.loss, *self._loss_args(b, train))
            losses.append(float(math.stop_gradient(loss)))
        t_train = time.perf_counter() - t0
        record = {
            'train_loss': distributed.mean_over_ranks(sum(losses) / len(losses)),
            'val_loss': self.validate(),
            'learning_rate': lr,
            'seconds': time.perf_counter() - t0,
            'train_seconds': t_train,
            'data_seconds': wait,
            'steps': len(losses),
        }
        self._bar.set_postfix(train=f"{record['train_loss']:.4g}", val=f"{record['val_loss'] or float('nan'):.4g}")
        self._bar.update()
        return record

    # --- checkpoints ---

    def identity(self) -> dict:
        model = dataclasses.asdict(self.model_config) if self.model_config else {'network': type(self.net).__name__}
        return {**super().identity(), 'model': model, 'base': self.base_name}

    def _state(self) -> dict:
        if TRAINING_BACKENDS[self.config.backend].keeps_adam_step:
            return {'adam_step': adam_step(self.optimizer)}
        return {}

    def _parts(self) -> dict:
        return {
            name: functools.partial(lambda obj, stem: nn.save_state(obj, str(stem)), obj)
            for name, obj in (('net', self.net), ('optimizer', self.optimizer))
        }

    def _restore(self, state: dict, parts: dict):
        try:
            nn.load_state(self.net, str(parts['net']))
            nn.load_state(self.optimizer, str(parts['optimizer']))
        except (RuntimeError, ValueError, KeyError, OSError, EOFError) as err:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"Network checkpoint {parts.get('net', '?')} does not fit this network ({self.identity()['model']}): {detail}"
            ) from None
        if not all(bool(self.backend.all(self.backend.isfinite(p))) for p in _parameters(self.net)):
            raise CheckpointError(f"Network checkpoint {parts['net']} holds non-finite weights; refusing it")
        if 'adam_step' in state:
            set_adam_step(self.optimizer, state['adam_step'])


def _parameters(net) -> list:
    """The network's parameter arrays (torch: `parameters()`; jax: the nested `parameters` tree)."""
    if hasattr(net, 'parameters') and callable(net.parameters):
        return [p.detach() for p in net.parameters()]
    import jax

    return jax.tree_util.tree_leaves(net.parameters)
