"""Epoch order: which windows an epoch visits, in which order, on which shard; a pure function of its arguments.

Part of step 3 of the pipeline (scenarios -> manager -> dataset -> trainer).
"""

from __future__ import annotations

import numpy as np


def epoch_order(
    n_real: int,
    n_generated: int,
    generated_pool: int,
    seed: int,
    epoch: int,
    shuffle: bool,
    shard=(0, 1),
    worker=(0, 1),
) -> np.ndarray:
    """Window ids of shard `shard = (rank, world_size)` in epoch `epoch`, in visiting order.

    Ids `0..n_real-1` are real windows; `n_generated` ids `>= n_real` are drawn afresh each epoch from a pool of
    `generated_pool` generated windows. With `world_size > 1`, the last `len % world_size` ids of the (shuffled)
    order are left out of the epoch, so that every rank gets the same number of windows and takes the same number of
    steps (data-parallel training would otherwise wait forever on the longer ranks). `worker = (index, workers)`
    splits a shard among data-loading workers of one process, which need no equal shares: together they visit every
    id of the shard exactly once.

    Example:
        >>> epoch_order(7, 0, 0, seed=0, epoch=0, shuffle=False, shard=(1, 2))
        array([1, 3, 5])
        >>> epoch_order(7, 0, 0, seed=0, epoch=0, shuffle=False, worker=(0, 2))
        array([0, 2, 4, 6])
    """
    ids = np.arange(n_real + n_generated)
    if n_generated:
        pool = np.random.default_rng([seed, epoch, 1]).choice(
            generated_pool, n_generated, replace=n_generated > generated_pool
        )
        ids[n_real:] = n_real + pool
    if shuffle:
        ids = ids[np.random.default_rng([seed, epoch]).permutation(len(ids))]
    rank, world = shard
    index, workers = worker
    return ids[: len(ids) // world * world][rank::world][index::workers]


def batch_spans(n: int, batch_size: int, start: int = 0, drop_last: bool = False) -> list[tuple[int, int]]:
    """`(begin, end)` positions of the batches of an epoch of `n` windows, from position `start`.

    Example:
        >>> batch_spans(7, 3), batch_spans(7, 3, start=3, drop_last=True)
        ([(0, 3), (3, 6), (6, 7)], [(3, 6)])
    """
    spans = [(a, min(a + batch_size, n)) for a in range(start, n, batch_size)]
    return [(a, b) for a, b in spans if b - a == batch_size or not drop_last]
