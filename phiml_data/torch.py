"""Torch interop: batches of a `PhiMLDataset` as torch tensors, for existing torch training code (extra `torch`).

Part of step 3 of the pipeline (scenarios -> manager -> dataset -> trainer), for users whose model is a plain
`torch.nn.Module`. Importing `phiml_data` never imports this module; importing this module imports torch.

Example:
    >>> from torch.utils.data import DataLoader
    >>> dm = DataManager(tmp, Burgers2D(resolution=16, steps=6))
    >>> _ = dm.generate(2, progress=False)
    >>> loader = DataLoader(TorchBatches(PhiMLDataset(dm, n_targets=2, batch_size=4)), batch_size=None)
    >>> b = next(iter(loader))
    >>> tuple(b['initial_state'].shape), tuple(b['targets'].shape)
    ((4, 2, 16, 16), (4, 2, 2, 16, 16))
"""

from __future__ import annotations

import dataclasses

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .arrays import to_arrays
from .dataset import PhiMLDataset
from .distributed import rank_and_world


class TorchBatches(IterableDataset):
    """The batches of one epoch of a `PhiMLDataset`, as torch tensors in the layout torch layers expect.

    Yields `{'initial_state': [B, C_in, X, (Y)], 'targets': [B, T, C_out, X, (Y)], 'window_ids', 'sim', 'start': [B]}`,
    channels first (with `n_input > 1`, `C_in` holds the frames oldest first, each with `dataset.input_channels`);
    the arrays are wrapped without a further copy. Use `DataLoader(TorchBatches(ds), batch_size=None, num_workers=N)`:
    each `torch.distributed` rank reads a disjoint, equal shard of the epoch (see `PhiMLDataset.epoch_order`), and
    the DataLoader workers of a rank split its shard, so that together they read every window of it exactly once.
    `set_epoch` also reaches workers that persist between epochs (`persistent_workers=True`): epoch and start live in
    shared memory.

    Resuming: each batch carries `'position'`, the number of batches of the epoch the loader has yielded up to and
    including it, counted over all workers of the rank (a `DataLoader` takes one batch from each worker in turn);
    `set_epoch(epoch, position)` of the last batch seen continues with exactly the windows not seen yet, whatever the
    number of workers.

    Args:
        dataset: The dataset (its sims, config and normalisation statistics are reused; its own shard is replaced).
        epoch: The epoch to read; call `set_epoch` before each epoch.
        start: Batches of the epoch already consumed, over all workers (`batch['position']` of the last batch seen).
    """

    def __init__(self, dataset: PhiMLDataset, epoch: int = 0, start: int = 0):
        super().__init__()
        self.cache, self.sims, self.stats, self.noise = dataset.cache, dataset.sims, dataset.stats, dataset.noise
        self.config = dataclasses.replace(dataset.config, prefetch=0)  # DataLoader workers are the parallelism
        self._position = torch.tensor([epoch, start], dtype=torch.int64).share_memory_()  # seen by every worker

    @property
    def epoch(self) -> int:
        return int(self._position[0])

    @property
    def start(self) -> int:
        return int(self._position[1])

    def set_epoch(self, epoch: int, start: int = 0):
        """Selects the epoch (and resume position) that the next iteration yields, in this process and its workers."""
        self._position[0], self._position[1] = int(epoch), int(start)

    def __iter__(self):
        info = get_worker_info()
        worker = (info.id, info.num_workers) if info else (0, 1)
        shard = rank_and_world()
        ds = PhiMLDataset(self.cache, self.sims, self.config, self.stats, shard=shard, worker=worker, noise=self.noise)
        index, workers = worker
        skipped = max(0, -(-(self.start - index) // workers))  # this worker's batches among the first `start`
        try:
            batches = ds.iterate_batches(epoch=self.epoch, start=skipped * ds.config.batch_size)
            for k, batch in enumerate(batches, start=skipped):
                arrays = to_arrays(batch, channels_first=True)
                yield {k: torch.from_numpy(v) for k, v in arrays.items()} | {
                    'epoch': batch['epoch'],
                    'position': k * workers + index + 1,  # the loader's count of batches, this one included
                }
        finally:
            ds.close()
