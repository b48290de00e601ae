"""Benchmark: `TorchBatches` through a torch `DataLoader` with 0, 1 and 2 worker processes, in the same run.

Usage:
    python benchmarks/bench_torch_workers.py [--sims 10] [--resolution 32] [--steps 40] [--epochs 5]

Data: the default config's training size (10 sims of 41 frames at 32x32, 2D Burgers with PhiFlow's cheap scheme:
only reading and batching are measured), windows of 1 + 3 frames, batches of 16, shuffled, `persistent_workers` so
that worker start-up is paid once (it is reported separately as the first epoch). Printed: median seconds per epoch
after the first, with the range, and the ratio to the in-process loader (`num_workers=0`). One thread per process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from common import machine_line, parse_arguments

os.environ.setdefault('OMP_NUM_THREADS', '1')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sims', type=int, default=10)
    parser.add_argument('--resolution', type=int, default=32)
    parser.add_argument('--steps', type=int, default=40)
    parser.add_argument('--epochs', type=int, default=5)
    args = parse_arguments(parser)

    import torch
    from torch.utils.data import DataLoader

    from phiml_data import Burgers2D, DataManager, PhiMLDataset
    from phiml_data.torch import TorchBatches

    torch.set_num_threads(1)
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        dm = DataManager(tmp, Burgers2D(resolution=args.resolution, steps=args.steps))
        dm.generate(args.sims, progress=False)
        rows = {}
        for workers in (0, 1, 2):
            batches = TorchBatches(PhiMLDataset(dm, n_input=1, n_targets=3, batch_size=16, shuffle=True))
            loader = DataLoader(batches, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
            times = []
            for epoch in range(args.epochs + 1):
                batches.set_epoch(epoch)
                start = time.perf_counter()
                count = sum(1 for _ in loader)
                times.append(time.perf_counter() - start)
            rows[workers] = (times[0], times[1:], count)
        base = statistics.median(rows[0][1])
        print(f"{args.sims} sims, {args.steps + 1} frames at {args.resolution}^2, {rows[0][2]} batches of 16 per epoch")
        print(f"{'num_workers':>11}  {'first epoch s':>13}  {'epoch s (median, range)':>26}  {'vs 0 workers':>12}")
        for workers, (first, rest, _) in rows.items():
            median = statistics.median(rest)
            print(
                f"{workers:>11}  {first:13.3f}  {median:9.3f} ({min(rest):.3f}-{max(rest):.3f})  {median / base:11.2f}x"
            )


if __name__ == '__main__':
    main()
