"""Memory policy of a dataset: in memory or lazy, how many cache files stay open, how many batches are prefetched,
and the check that a lazy epoch fits its memory limit.

Part of step 3 of the pipeline (scenarios -> manager -> dataset -> trainer); `PhiMLDataset` asks `plan` once.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryPlan:
    """How a dataset holds its data.

    Attributes:
        in_memory: All frames in memory (filled on first use), or windows read from disk.
        max_open_files: Cache files a lazy source keeps open (LRU).
        prefetch: Batches assembled ahead in a background thread.
    """

    in_memory: bool
    max_open_files: int
    prefetch: int


def plan(config, data_bytes: int, window_bytes: int, handle_bytes: int) -> MemoryPlan:
    """The memory plan of a `DatasetConfig` for data of `data_bytes`, windows of `window_bytes`, files of `handle_bytes`.

    `mode='auto'` keeps the data in memory when it fills at most half of `memory_limit`. Open files may take 10 % of
    the limit (and a quarter of the descriptor limit). The default prefetch is 2 batches, fewer where a lazy plan
    cannot hold them.

    Raises:
        ValueError: A lazy epoch would not fit `memory_limit`; the message gives the largest batch size that fits.

    Example:
        >>> from phiml_data import DatasetConfig
        >>> plan(DatasetConfig(mode='lazy', memory_limit=2**24), 10**9, 10**5, 2**14)
        MemoryPlan(in_memory=False, max_open_files=102, prefetch=2)
    """
    limit = config.memory_limit
    in_memory = config.mode == 'memory' or (config.mode == 'auto' and data_bytes <= limit // 2)
    max_open = int(min(descriptor_budget(), max(4, limit // 10 // handle_bytes)))
    need = lambda p: (
        3 * window_bytes * config.batch_size * (p + 1) + max_open * handle_bytes
    )  # gathered, packed, normalised
    if config.prefetch is not None:
        prefetch = config.prefetch
    else:
        prefetch = next((p for p in (2, 1) if in_memory or need(p) <= limit), 0)
    if not in_memory and need(prefetch) > limit:
        fit = max((limit - max_open * handle_bytes) // (3 * window_bytes * (prefetch + 1)), 0)
        raise ValueError(
            f"batch_size={config.batch_size} with prefetch={prefetch} needs ~{need(prefetch) / 2**20:.1f} MiB "
            f"(with {max_open} open files), over memory_limit={limit / 2**20:.1f} MiB; valid: batch_size <= {fit}"
        )
    return MemoryPlan(in_memory, max_open, prefetch)


def descriptor_budget() -> int:
    """Open cache files a dataset may keep: a quarter of the process's descriptor limit, at most 1024."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return int(min(1024, max(4, soft // 4)))
