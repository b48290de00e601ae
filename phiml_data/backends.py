"""Per-backend state that training needs for a while and then hands back: RNG seeds and thread counts.

PhiML's `math.seed` and torch's `set_num_threads` change process-wide state. These context managers change it only
for the block they guard and restore it afterwards, so that a `Trainer` never alters what its caller set. Torch is
imported inside the functions: the data layer stays importable without it.
"""

from __future__ import annotations

import contextlib

from ._phiml import get_backend


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
