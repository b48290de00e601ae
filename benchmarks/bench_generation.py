"""Benchmark: simulation throughput locally (in-process batches, a 2-process pool) vs a local Dask cluster with 1 and 2 workers.

Usage:
    python benchmarks/bench_generation.py [--sims 32] [--resolution 32] [--steps 40] [--batch-size 8]

Each method fills a fresh cache with the same config; the table gives sims/s and the ratio to the local default.
The overhead per simulation is measured with 1-step sims, where scheduling and file writing dominate.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

from phiml_data import Burgers2D, DataManager


def timed(scenario, sims, batch_size, client=None) -> float:
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        DataManager(root, scenario).generate(sims, executor=client, batch_size=batch_size, progress=False)
        return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sims', type=int, default=32)
    p.add_argument('--resolution', type=int, default=32)
    p.add_argument('--steps', type=int, default=40)
    p.add_argument('--batch-size', type=int, default=8)
    args = p.parse_args()
    from distributed import Client, LocalCluster

    scenario = Burgers2D(resolution=args.resolution, steps=args.steps)
    tiny = Burgers2D(resolution=8, steps=1)
    timed(scenario, 2, 2)  # warm-up: imports and first-call costs
    rows = [('local (in-process)', timed(scenario, args.sims, args.batch_size), timed(tiny, args.sims, 1))]
    with ProcessPoolExecutor(2) as pool:
        timed(scenario, 2, 2, pool)
        rows.append(
            (
                'local ProcessPoolExecutor(2)',
                timed(scenario, args.sims, args.batch_size, pool),
                timed(tiny, args.sims, 1, pool),
            )
        )
    for workers in (1, 2):
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host='127.0.0.1', dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            timed(scenario, 2, 2, client)  # warm the workers
            rows.append(
                (
                    f'dask, {workers} worker(s)',
                    timed(scenario, args.sims, args.batch_size, client),
                    timed(tiny, args.sims, 1, client),
                )
            )
    print(
        f"{args.sims} sims of 2D Burgers {args.resolution}x{args.resolution}, {args.steps} steps, {args.batch_size} sims per chunk\n"
    )
    print(
        '| method | seconds | sims/s | vs local | overhead per sim (ms, 1-step sims, 1 per chunk) |\n|---|---|---|---|---|'
    )
    base = rows[0][1]
    for name, t, t_tiny in rows:
        print(f'| {name} | {t:.2f} | {args.sims / t:.1f} | {base / t:.2f}x | {1000 * t_tiny / args.sims:.1f} |')


if __name__ == '__main__':
    main()
