"""What differs between training backends (`TRAINING_BACKENDS`, by `training.backend`), and per-backend state that
training needs for a while and then hands back: RNG seeds and thread counts.

PhiML's `math.seed` and torch's `set_num_threads` change process-wide state. These context managers change it only
for the block they guard and restore it afterwards, so that a `Trainer` never alters what its caller set. Torch is
imported inside the functions: the data layer stays importable without it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

from . import distributed
from ._phiml import adam_step, get_backend, set_adam_step
from .registry import Registry


def backend_named(name: str):
    """The PhiML backend `name` (`'torch'`, `'jax'`, `'numpy'`), initialised if needed, without making it the default."""
    return get_backend(name)


@contextlib.contextmanager
def seeded(backend, seed: int):
    """Seeds only `backend`'s generator for the block and restores its previous state afterwards."""
    if backend.name == 'torch':
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
        return
    previous = getattr(backend, 'rnd_key', None)  # jax: the backend object holds its key
    backend.seed(seed)
    try:
        yield
    finally:
        backend.rnd_key = previous


@contextlib.contextmanager
def threads(backend, n: int):
    """Torch intra-op threads for the block (restored afterwards); other backends and `n = 0` are left alone."""
    if backend.name != 'torch' or not n:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class TrainingBackend:
    """What differs between training backends: the optimiser step `update(net, optimizer, loss_function, *args)`,
    how ranks are found (`ranks() -> (rank, world_size)`; torch.distributed only), and whether the Adam step counter
    must be saved beside the optimiser state (phiml 1.16.1's jax optimiser)."""

    update: Callable
    ranks: Callable[[], tuple[int, int]]
    keeps_adam_step: bool


TRAINING_BACKENDS: Registry[TrainingBackend] = Registry('training backend')  # by `training.backend`


def _torch_update(net, optimizer, loss_function, *args):
    """`nn.update_weights` (imported here: reading a config imports no network code)."""
    from phiml import nn

    return nn.update_weights(net, optimizer, loss_function, *args)


def _jax_update(net, optimizer, loss_function, *args):
    """`nn.update_weights` for jax without phiml 1.16.1's bugs: eager update, Adam step counter advanced."""
    from phiml import nn

    loss = nn.update_weights(net, optimizer, loss_function, *args)
    set_adam_step(optimizer, adam_step(optimizer) + 1)
    return loss


TRAINING_BACKENDS.add('torch', TrainingBackend(_torch_update, distributed.rank_and_world, False), _torch_update)
TRAINING_BACKENDS.add('jax', TrainingBackend(_jax_update, lambda: (0, 1), True), _jax_update)
