"""What the benchmark scripts share: their argument check, the machine line every report starts with, and a
config's training set."""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """`parser.parse_args()`, and with `PHIML_DATA_CHECK_ONLY=1` (as `phiml-data` honours it) also the config and its
    `KEY=VALUE` overrides read and checked, then `ok: ...` printed and the process ended: how tests/test_readme.py runs
    every benchmark line of the README as printed without running the benchmark."""
    args = parser.parse_args()
    if os.environ.get('PHIML_DATA_CHECK_ONLY') == '1':
        if getattr(args, 'config', None):
            from phiml_data import load_run_config
            from phiml_data.cli import parse_overrides

            load_run_config(args.config, parse_overrides(getattr(args, 'overrides', None) or []))
        print(f'ok: {parser.prog} {vars(args)}')
        sys.exit(0)
    return args


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
