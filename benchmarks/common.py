"""What the benchmark scripts share: the machine line every report starts with, and a config's training set."""

from __future__ import annotations

import os
import time


def machine_line(when: str = '') -> str:
    """`machine: N cores, load average L[ when]; date time`, the first line of every benchmark report."""
    load = f"load average {os.getloadavg()[0]:.2f}{' ' + when if when else ''}"
    return f"machine: {os.cpu_count()} cores, {load}; {time.strftime('%Y-%m-%d %H:%M')}"


def training_set(config: str, overrides: list[str], max_sims: int = None):
    """`(cfg, train)`: the run config with CLI-style overrides, and its training split as a `PhiMLDataset`
    (the cache generated first if needed), at most `max_sims` of its sims."""
    from phiml_data import PhiMLDataset, load_run_config, split_sims
    from phiml_data.cli import parse_overrides

    cfg = load_run_config(config, parse_overrides(overrides))
    dm = cfg.data_manager()
    dm.generate(cfg.data.n_sims, progress=False)
    sims = split_sims(dm.cached_indices(), cfg.data.split, cfg.data.split_seed)['train'][:max_sims]
    return cfg, PhiMLDataset(dm, sims, cfg.dataset)
