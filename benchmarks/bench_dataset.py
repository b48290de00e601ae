"""Benchmark: PhiMLDataset (in-memory, lazy) vs the legacy torch pipeline vs direct h5py window reads.

Usage:
    python benchmarks/bench_dataset.py [--sims 32] [--steps 100] [--resolution 64] [--batch-size 32] [--n-targets 4]

All methods read the same cache (2D Burgers-shaped velocity, random values written once; only I/O and batch assembly
are measured), one shuffled epoch each, in a fresh child process so that each peak RSS is its own. Printed per method:
samples/s, time to first batch (from a cold start of the method, imports excluded), peak RSS; then the ratios the
project targets, and the lazy time to first batch on a 4x larger cache.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
METHODS = ['phiml_memory', 'phiml_lazy', 'legacy_workers0', 'legacy_workers2', 'h5py_direct']


def _peak_rss_mib() -> float:
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def make_cache(root: Path, sims: int, steps: int, resolution: int):
    from phiml import math
    from phiml_data import Burgers2D, DataManager
    dm = DataManager(root, Burgers2D(resolution=resolution, steps=steps))
    rng = np.random.default_rng(0)
    shape = math.batch(time=steps + 1) & math.spatial(x=resolution, y=resolution) & math.channel(vector='x,y')
    for i in range(sims):
        if i not in dm.manifest():
            dm.save_phiml_cache(i, {'velocity': math.tensor(rng.standard_normal(shape.sizes, dtype=np.float32), shape)})
    return dm


def run_method(method: str, root: str, args) -> dict:
    """Runs one method for one epoch in this process; returns its figures."""
    from phiml.math import Tensor
    from phiml_data import Burgers2D, DataManager, PhiMLDataset
    dm = DataManager(root, Burgers2D(resolution=args.resolution, steps=args.steps))
    sims = list(range(args.sims))
    t0 = time.perf_counter()
    if method.startswith('phiml'):
        ds = PhiMLDataset(dm, sims, n_targets=args.n_targets, batch_size=args.batch_size, normalize=False,
                          mode='memory' if method == 'phiml_memory' else 'lazy')
        batches = ((b['initial_state'], b['targets']) for b in ds.iterate_batches())
    elif method.startswith('legacy'):
        sys.path.insert(0, str(HERE))
        from legacy_pipeline import legacy_loader, write_legacy_caches
        legacy_dir = Path(root) / f'legacy-{args.sims}'
        files = sorted(legacy_dir.glob('*.pt')) if legacy_dir.exists() else write_legacy_caches(dm, sims, legacy_dir)
        t0 = time.perf_counter()  # writing the legacy files is not part of loading
        batches = iter(legacy_loader(files, ['velocity'], ['velocity'], args.n_targets, args.batch_size,
                                     num_workers=int(method[-1]), shuffle=True))
    else:
        batches = _h5py_batches(dm, sims, args)
    n, first = 0, None
    for init, targ in batches:
        n += init.shape.get_size('batch') if isinstance(init, Tensor) else init.shape[0]
        if first is None:
            first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return {'method': method, 'samples': n, 'seconds': total, 'samples_per_s': n / total, 'first_batch_s': first, 'peak_rss_mib': _peak_rss_mib()}


def _h5py_batches(dm, sims, args):
    """The floor: plain h5py slices of the windows, stacked into NumPy arrays, no names."""
    import h5py
    files = {s: h5py.File(dm.path(s), 'r') for s in sims}
    length = 1 + args.n_targets
    windows = [(s, t) for s in sims for t in range(args.steps + 1 - length + 1)]
    order = np.random.default_rng(0).permutation(len(windows))
    for i in range(0, len(order), args.batch_size):
        frames = np.stack([files[s]['root[velocity]'][t:t + length] for s, t in (windows[j] for j in order[i:i + args.batch_size])])
        yield frames[:, 0], frames[:, 1:]


def child(method, root, args) -> dict:
    cmd = [sys.executable, __file__, '--child', method, '--root', str(root), '--sims', str(args.sims), '--steps', str(args.steps),
           '--resolution', str(args.resolution), '--batch-size', str(args.batch_size), '--n-targets', str(args.n_targets)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{method} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sims', type=int, default=32)
    p.add_argument('--steps', type=int, default=100)
    p.add_argument('--resolution', type=int, default=64)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--n-targets', type=int, default=4)
    p.add_argument('--child')
    p.add_argument('--root')
    args = p.parse_args()
    if args.child:
        print(json.dumps(run_method(args.child, args.root, args)))
        return
    with tempfile.TemporaryDirectory() as root:
        dm = make_cache(Path(root), args.sims, args.steps, args.resolution)
        size = sum(f.stat().st_size for f in dm.directory.glob('sim_*.h5')) / 2 ** 20
        print(f"cache: {args.sims} sims x {args.steps + 1} frames x {args.resolution}^2 x 2 float32 = {size:.0f} MiB; "
              f"batch {args.batch_size} windows of 1 + {args.n_targets} frames")
        rows = {m: child(m, root, args) for m in METHODS}
        print(f"\n| method | samples/s | time to first batch (s) | peak RSS (MiB) |\n|---|---|---|---|")
        for r in rows.values():
            print(f"| {r['method']} | {r['samples_per_s']:.0f} | {r['first_batch_s']:.3f} | {r['peak_rss_mib']:.0f} |")
        ratio = lambda a, b: rows[a]['samples_per_s'] / rows[b]['samples_per_s']
        print(f"\nphiml_memory / legacy_workers0 = {ratio('phiml_memory', 'legacy_workers0'):.2f}x (target >= 1)")
        print(f"phiml_lazy / h5py_direct = {ratio('phiml_lazy', 'h5py_direct'):.2f}x (target >= 0.8)")
        big = make_cache(Path(root), 4 * args.sims, args.steps, args.resolution)
        args.sims *= 4
        lazy_big = child('phiml_lazy', root, args)
        print(f"lazy time to first batch: {rows['phiml_lazy']['first_batch_s']:.3f} s ({args.sims // 4} sims), "
              f"{lazy_big['first_batch_s']:.3f} s ({args.sims} sims); peak RSS {rows['phiml_lazy']['peak_rss_mib']:.0f} vs {lazy_big['peak_rss_mib']:.0f} MiB")


if __name__ == '__main__':
    main()
