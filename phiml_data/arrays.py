"""Batches as plain NumPy arrays, for code outside PhiML (JAX, torch: `phiml_data.torch.TorchBatches`).

Part of step 3 of the pipeline (... -> dataset -> your own training code).
"""

from __future__ import annotations

import numpy as np


def to_arrays(batch: dict, channels_first: bool = False) -> dict[str, np.ndarray]:
    """The tensors of a batch as NumPy arrays, for code outside PhiML (JAX: `jax.numpy.asarray`, torch: `TorchBatches`).

    Args:
        batch: A batch of `PhiMLDataset.iterate_batches`.
        channels_first: `[B, C, X, Y]` / `[B, T, C, X, Y]` (torch) instead of `[B, X, Y, C]` / `[B, T, X, Y, C]` (JAX).
            With `n_input > 1`, `C` holds the frames oldest first, each with the input channels.

    Returns:
        `{'initial_state', 'targets', 'window_ids', 'sim', 'start'}` as C-contiguous arrays.

    Example:
        >>> dm = DataManager(tmp, Burgers2D(resolution=16, steps=6))
        >>> _ = dm.generate(2, progress=False)
        >>> a = to_arrays(next(PhiMLDataset(dm, n_input=2, n_targets=3, batch_size=4).iterate_batches()))
        >>> a['initial_state'].shape, a['targets'].shape
        ((4, 16, 16, 4), (4, 3, 16, 16, 2))
    """
    out = {}
    for key in ('initial_state', 'targets'):
        t = batch[key]
        lead = [d for d in ('batch', 'time') if d in t.shape]
        space = list(t.shape.spatial.names)
        chans = [d for d in ('history', 'channels') if d in t.shape]
        order = lead + chans + space if channels_first else lead + space + chans
        a = t.numpy(order)
        if 'history' in t.shape:  # merge history and channels into one axis
            at = len(lead) if channels_first else len(lead) + len(space)
            a = a.reshape(*a.shape[:at], -1, *a.shape[at + 2 :])
        out[key] = np.ascontiguousarray(a)
    out.update({k: batch[k].numpy('batch') for k in ('window_ids', 'sim', 'start')})
    return out
