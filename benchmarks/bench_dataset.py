"""Benchmark: PhiMLDataset (memory, lazy, lazy under a tight memory limit) against fair baselines, in the same run.

Usage:
    python benchmarks/bench_dataset.py [--sims 32] [--steps 100] [--resolution 64] [--batch-size 32] [--n-targets 4]
                                       [--repeats 5] [--big-sims 128] [--quick]

Data: `--sims` sims x (steps + 1) frames x resolution^2 x 2 float32 (random values written once through the cache;
only reading and batch assembly are measured). Every method runs two shuffled epochs of windows of 1 + n_targets
frames in batches of `--batch-size` (PhiML without its background prefetch thread, like the baselines), each in a
fresh process (so peak RSS is its own), interleaved, `--repeats` times; printed: median samples/s of the cold first
epoch (construction, loading, opening and every verification included; imports excluded) and of the warm second
epoch, with ranges, time to first batch, peak RSS over the process's RSS after imports. Methods:

| method                | what it is                                                                                |
|-----------------------|-------------------------------------------------------------------------------------------|
| `numpy_gather`        | ceiling: all data in one array, one fancy-index gather per batch, one PhiML wrap per entry |
| `phiml_memory`        | `PhiMLDataset(mode='memory')`, verified                                                    |
| `h5py_fair`           | plain h5py: files kept open, chunk cache off, one `read_direct` per window into a preallocated batch |
| `phiml_lazy`          | `PhiMLDataset(mode='lazy')`, default memory limit, verified                                |
| `phiml_lazy_unverified` | the same with the per-frame CRC checks switched off (measures their cost)                |
| `phiml_lazy_quarter`  | lazy with `memory_limit` = 1/4 of the data                                                 |
| `legacy_workers0/2`   | the legacy pipeline: `torch.save` files -> `Dataset` (per-window `__getitem__`) -> `DataLoader(shuffle=True)`, default collate |

Then `phiml_lazy_quarter`, `h5py_fair` and `phiml_memory` again on `--big-sims` sims (same frames), and the
training data-wait fraction of the default config (time waiting for the next batch / time of the epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from common import machine_line, parse_arguments

HERE = Path(__file__).resolve().parent
METHODS = [
    'numpy_gather',
    'phiml_memory',
    'h5py_fair',
    'phiml_lazy',
    'phiml_lazy_unverified',
    'phiml_lazy_quarter',
    'legacy_workers0',
    'legacy_workers2',
]
BIG = ['numpy_gather', 'phiml_memory', 'h5py_fair', 'phiml_lazy_quarter']


def _rss_mib(key='VmRSS') -> float:
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'):
            return int(line.split()[1]) / 1024
    return float('nan')


def make_cache(root: Path, sims: int, steps: int, resolution: int):
    from phiml import math

    from phiml_data import Burgers2D, DataManager

    dm = DataManager(root, Burgers2D(resolution=resolution, steps=steps))
    rng = np.random.default_rng(0)
    shape = math.batch(time=steps + 1) & math.spatial(x=resolution, y=resolution) & math.channel(vector='x,y')
    cached = set(dm.cached_indices())
    for i in range(sims):
        if i not in cached:
            dm.save_phiml_cache(i, {'velocity': math.tensor(rng.standard_normal(shape.sizes, dtype=np.float32), shape)})
    return dm


def _windows(args):
    length = 1 + args.n_targets
    windows = np.array([(s, t) for s in range(args.sims) for t in range(args.steps + 1 - length + 1)])
    return windows[np.random.default_rng(0).permutation(len(windows))], length


def run_method(method: str, root: str, args) -> dict:
    """Runs one method for one epoch in this process; returns its figures."""
    from phiml import math
    from phiml.math import Tensor

    from phiml_data import Burgers2D, DataManager

    if method.startswith('legacy'):
        import torch

        torch.set_num_threads(1)
        sys.path.insert(0, str(HERE))
        from legacy_pipeline import legacy_loader  # noqa: F401
    dm = DataManager(root, Burgers2D(resolution=args.resolution, steps=args.steps))
    sims = list(range(args.sims))
    base_rss = _rss_mib()
    t0 = time.perf_counter()
    epochs = _epochs(method, dm, sims, root, args)
    n, first, seconds = 0, None, []
    for batches in epochs:
        t_epoch, n = time.perf_counter() if seconds else t0, 0
        for init, targ in batches:
            n += init.shape.get_size('batch') if isinstance(init, Tensor) else init.shape[0]
            if first is None:
                first = time.perf_counter() - t0
        seconds.append(time.perf_counter() - t_epoch)
    del math
    return {
        'method': method,
        'samples': n,
        'cold': n / seconds[0],
        'warm': n / seconds[1],
        'first_batch_s': first,
        'peak_rss_over_base_mib': _rss_mib('VmHWM') - base_rss,
    }


def _epochs(method, dm, sims, root, args):
    """Two epochs of `(initial, targets)` batches; setup happens lazily, inside the first epoch's time."""
    from phiml_data import PhiMLDataset

    if method.startswith('phiml'):
        if method == 'phiml_lazy_unverified':
            from phiml_data.cache import SimFile

            SimFile._verify = lambda self, field, array, first, n, done: done.__setitem__(
                slice(first, first + n), bytes([1]) * n
            )
        limit = {}
        if method == 'phiml_lazy_quarter':
            limit = {'memory_limit': max(dm.summary()['bytes'] // 4, 1)}
        ds = PhiMLDataset(
            dm,
            sims,
            n_targets=args.n_targets,
            batch_size=args.batch_size,
            normalize=False,
            prefetch=0,
            mode='memory' if method == 'phiml_memory' else 'lazy',
            **limit,
        )  # no thread, like the baselines
        for e in range(2):
            yield ((b['initial_state'], b['targets']) for b in ds.iterate_batches(epoch=e))
    elif method.startswith('legacy'):
        from legacy_pipeline import legacy_loader

        files = sorted((Path(root) / f'legacy-{args.sims}').glob('*.pt'))
        loader = legacy_loader(
            files,
            ['velocity'],
            ['velocity'],
            args.n_targets,
            args.batch_size,
            num_workers=int(method[-1]),
            shuffle=True,
        )
        for _ in range(2):
            yield iter(loader)
    else:
        data = _load_all(dm, args) if method == 'numpy_gather' else None
        files = (
            {s: h5py.File(dm.path(s), 'r', rdcc_nbytes=0)['root[velocity]'] for s in range(args.sims)}
            if data is None
            else None
        )
        for _ in range(2):
            yield _numpy_batches(data, args) if data is not None else _h5py_batches(files, args)


def _load_all(dm, args) -> np.ndarray:
    data = None
    for s in range(args.sims):
        with h5py.File(dm.path(s), 'r') as f:
            a = f['root[velocity]']
            if data is None:
                data = np.empty((args.sims, *a.shape), a.dtype)
            a.read_direct(data[s])
    return data


def _numpy_batches(data, args):
    """The ceiling: every frame in one array `[S, T, X, Y, C]`, one fancy-index gather per batch, one wrap per entry."""
    from phiml import math

    windows, length = _windows(args)
    offsets = np.arange(length)
    space = math.spatial(x=args.resolution, y=args.resolution) & math.channel(channels='velocity.x,velocity.y')
    for i in range(0, len(windows), args.batch_size):
        w = windows[i : i + args.batch_size]
        frames = data[w[:, 0, None], w[:, 1, None] + offsets]
        b = math.batch(batch=len(w))
        yield (
            math.tensor(frames[:, 0], math.concat_shapes(b, space)),
            math.tensor(frames[:, 1:], math.concat_shapes(b, math.batch(time=length - 1), space)),
        )


def _h5py_batches(files, args):
    """A fair per-window h5py loop: files kept open, chunk cache off, one `read_direct` per window into a preallocated batch."""
    windows, length = _windows(args)
    shape = files[0].shape[1:]
    for i in range(0, len(windows), args.batch_size):
        w = windows[i : i + args.batch_size]
        out = np.empty((len(w), length, *shape), np.float32)
        for j, (s, t) in enumerate(w):
            files[s].read_direct(out[j], np.s_[t : t + length])
        yield out[:, 0], out[:, 1:]


def child(method, root, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        '--child',
        method,
        '--root',
        str(root),
        '--sims',
        str(args.sims),
        '--steps',
        str(args.steps),
        '--resolution',
        str(args.resolution),
        '--batch-size',
        str(args.batch_size),
        '--n-targets',
        str(args.n_targets),
    ]
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1'}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(f"{method} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(methods, root, args) -> dict:
    """`{method: [figures of each repeat]}`, the methods interleaved in every repeat."""
    runs = {m: [] for m in methods}
    for _ in range(args.repeats):
        for m in methods:
            runs[m].append(child(m, root, args))
    return runs


def summarize(runs: dict) -> dict:
    out = {}
    for m, rs in runs.items():
        out[m] = {
            'first_batch_s': statistics.median(r['first_batch_s'] for r in rs),
            'peak_rss_over_base_mib': max(r['peak_rss_over_base_mib'] for r in rs),
        }
        for k in ('cold', 'warm'):
            values = [r[k] for r in rs]
            out[m][k] = {'median': statistics.median(values), 'min': min(values), 'max': max(values)}
    return out


def print_table(title, s: dict):
    print(
        f"\n{title}\n\n| method | epoch 1 (cold) samples/s | range | epoch 2 (warm) samples/s | range | first batch (s) | "
        f"peak RSS over imports (MiB) |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for m, r in s.items():
        c, w = r['cold'], r['warm']
        print(
            f"| `{m}` | {c['median']:,.0f} | {c['min']:,.0f}–{c['max']:,.0f} | {w['median']:,.0f} | {w['min']:,.0f}–{w['max']:,.0f} | "
            f"{r['first_batch_s']:.3f} | {r['peak_rss_over_base_mib']:.0f} |"
        )


def data_wait_fraction() -> dict:
    """Trains the default config for 4 epochs (1 torch thread, default prefetch) and reports the time spent waiting for batches."""
    code = f"""
import json, sys, tempfile, dataclasses
sys.path.insert(0, {str(HERE.parent)!r})
from phiml_data import load_run_config, DataManager, PhiMLDataset, split_sims
from phiml_data.trainer import Trainer
cfg = load_run_config({str(HERE.parent / 'configs' / 'default.yaml')!r}, {{'data': {{'cache_dir': tempfile.mkdtemp()}}}})
dm = DataManager(cfg.data.cache_dir, cfg.scenario); dm.generate(cfg.data.n_sims, progress=False)
splits = split_sims(range(cfg.data.n_sims), cfg.data.split)
train = PhiMLDataset(dm, splits['train'], cfg.dataset)
history = Trainer(train, None, cfg.model, dataclasses.replace(cfg.training, epochs=4, progress=False, threads=1)).fit()
print(json.dumps(history))
"""
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    history = json.loads(result.stdout.strip().splitlines()[-1])
    wait, total = sum(r['data_seconds'] for r in history), sum(r['train_seconds'] for r in history)
    return {'data_seconds': wait, 'train_seconds': total, 'fraction': wait / total}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sims', type=int, default=32)
    p.add_argument('--big-sims', type=int, default=128)
    p.add_argument('--steps', type=int, default=100)
    p.add_argument('--resolution', type=int, default=64)
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--n-targets', type=int, default=4)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--quick', action='store_true', help='small data, 2 repeats: checks that the benchmark runs')
    p.add_argument('--child')
    p.add_argument('--root')
    args = parse_arguments(p)
    if args.child:
        print(json.dumps(run_method(args.child, args.root, args)))
        return
    if args.quick:
        args.sims, args.big_sims, args.steps, args.resolution, args.batch_size, args.repeats = 8, 16, 40, 32, 4, 2
    print(machine_line('at start'))
    with tempfile.TemporaryDirectory() as root:
        dm = make_cache(Path(root), args.sims, args.steps, args.resolution)
        sys.path.insert(0, str(HERE))
        from legacy_pipeline import write_legacy_caches

        write_legacy_caches(dm, range(args.sims), Path(root) / f'legacy-{args.sims}')
        size = dm.summary()['bytes'] / 2**20
        print(
            f"data: {args.sims} sims x {args.steps + 1} frames x {args.resolution}^2 x 2 float32 = {size:.0f} MiB; "
            f"batches of {args.batch_size} windows of 1 + {args.n_targets} frames; {args.repeats} interleaved repeats"
        )
        small = summarize(measure(METHODS, root, args))
        print_table(f"{args.sims} sims", small)
        make_cache(Path(root), args.big_sims, args.steps, args.resolution)
        sims, args.sims = args.sims, args.big_sims
        big = summarize(measure(BIG, root, args))
        print_table(f"{args.big_sims} sims ({size * args.big_sims / sims:.0f} MiB)", big)
    wait = data_wait_fraction()
    r = lambda s, a, b, k='cold': s[a][k]['median'] / s[b][k]['median']
    quarter_limit = size / 4
    checks = [
        (f'lazy / h5py_fair, epoch 1 ({sims} sims)', r(small, 'phiml_lazy', 'h5py_fair'), '>= 1.5'),
        (f'lazy / h5py_fair, epoch 2 ({sims} sims)', r(small, 'phiml_lazy', 'h5py_fair', 'warm'), '>= 1.5'),
        (
            f'lazy, limit data/4 / h5py_fair, epoch 1 ({sims} sims)',
            r(small, 'phiml_lazy_quarter', 'h5py_fair'),
            '>= 1.0',
        ),
        (
            f'lazy, limit data/4 / h5py_fair, epoch 1 ({args.big_sims} sims)',
            r(big, 'phiml_lazy_quarter', 'h5py_fair'),
            '>= 1.0',
        ),
        (
            f'verified lazy / unverified lazy, epoch 1 ({sims} sims)',
            r(small, 'phiml_lazy', 'phiml_lazy_unverified'),
            '>= 0.9',
        ),
        (f'memory / numpy_gather, epoch 2 ({sims} sims)', r(small, 'phiml_memory', 'numpy_gather', 'warm'), '>= 0.9'),
        (
            f'memory / numpy_gather, epoch 1 incl. loading ({sims} sims)',
            r(small, 'phiml_memory', 'numpy_gather'),
            '(info)',
        ),
        (f'memory / legacy_workers0, epoch 1 ({sims} sims)', r(small, 'phiml_memory', 'legacy_workers0'), '> 1'),
        (f'memory: time to first batch ({args.big_sims} sims), s', big['phiml_memory']['first_batch_s'], '<= 0.3'),
        (
            f'lazy, limit data/4: peak RSS over imports ({sims} sims), MiB',
            small['phiml_lazy_quarter']['peak_rss_over_base_mib'],
            f'<= limit + 64 = {quarter_limit + 64:.0f}',
        ),
        (
            f'lazy, limit data/4: peak RSS over imports ({args.big_sims} sims), MiB',
            big['phiml_lazy_quarter']['peak_rss_over_base_mib'],
            f'<= limit + 64 = {quarter_limit * args.big_sims / sims + 64:.0f}',
        ),
        ('training: time waiting for batches / epoch time (default config)', wait['fraction'], '< 0.02'),
    ]
    print("\n| ratio | value | target |\n|---|---:|---|")
    for name, value, target in checks:
        print(f"| {name} | {value:.3f} | {target} |")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == '__main__':
    main()
