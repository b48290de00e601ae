"""Benchmark: manifest update and open times as the cache grows, against rewriting one JSON file per update.

Usage:
    python benchmarks/bench_manifest.py [--sizes 1000 10000 100000] [--updates 20]

Entries are simulated (the shape of a real 2D Burgers entry; no sims are simulated). For each size N the manifest
holds N compacted entries; then `--updates` sims are recorded one at a time and the median time of one update is
reported, for `Manifest` (one entry file per update) and for the baseline the previous version used (read the whole
manifest, add the entry, rewrite it atomically, under the lock). Also: opening (reading) the manifest with N entries
in a fresh process-like state, and one compaction.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import machine_line, parse_arguments

from phiml_data.manifest import Manifest, write_json


def entry(i: int) -> dict:
    return {
        'file': f'sim_{i:06d}.h5',
        'bytes': 3_400_000,
        'origin': 'simulated',
        'fields': {
            'velocity': {
                'shape': '(time:b=101,x:s=64,y:s=64,vector:c=(x,y))',
                'dtype': 'float32',
                'digest': f'{i:064x}',
            }
        },
    }


def rewrite_baseline(manifest: Manifest, i: int):
    """The previous mechanism: the whole manifest read, extended and rewritten under the lock."""
    with manifest.locked():
        path = manifest.directory / 'manifest.json'
        sims = json.loads(path.read_text())['sims']
        sims[str(i)] = entry(i)
        write_json(path, {'key': manifest.key, 'sims': sims})


def measure(n: int, updates: int) -> dict:
    with tempfile.TemporaryDirectory() as root:
        manifest = Manifest(Path(root), 'k' * 16, {})
        write_json(Path(root) / 'config.json', {'key': 'k' * 16})
        write_json(Path(root) / 'manifest.json', {'key': 'k' * 16, 'sims': {str(i): entry(i) for i in range(n)}})
        times = []
        for u in range(updates):
            t = time.perf_counter()
            manifest.update({n + u: entry(n + u)})
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        opened = Manifest(Path(root), 'k' * 16, {}).read()
        t_open = time.perf_counter() - t
        assert len(opened) == n + updates
        t = time.perf_counter()
        manifest.compact()
        t_compact = time.perf_counter() - t
        baseline = []
        for u in range(updates):
            t = time.perf_counter()
            rewrite_baseline(manifest, n + updates + u)
            baseline.append(time.perf_counter() - t)
    return {
        'n': n,
        'update_ms': 1e3 * statistics.median(times),
        'baseline_update_ms': 1e3 * statistics.median(baseline),
        'open_s': t_open,
        'compact_s': t_compact,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[1000, 10000, 100000])
    p.add_argument('--updates', type=int, default=20)
    args = parse_arguments(p)
    print(machine_line())
    print(
        '\n| sims in the manifest | one update (ms) | baseline: rewrite (ms) | baseline / ours | open (s) | compaction (s) |'
    )
    print('|---:|---:|---:|---:|---:|---:|')
    for n in args.sizes:
        r = measure(n, args.updates)
        print(
            f"| {n:,} | {r['update_ms']:.2f} | {r['baseline_update_ms']:.1f} | {r['baseline_update_ms'] / r['update_ms']:.0f}x | "
            f"{r['open_s']:.3f} | {r['compact_s']:.2f} |"
        )
    print('\ntargets: one update < 10 ms, opening a 100k-sim manifest < 1 s')


if __name__ == '__main__':
    main()
