"""Benchmark: simulation throughput locally (in-process batches, a 2-process pool) vs a local Dask cluster with 1 and 2
workers; with `--vs-exponax`, our solvers against Exponax on the same PDE, grids, horizon and thread count.

Usage:
    python benchmarks/bench_generation.py [--sims 32] [--resolution 32] [--steps 40] [--batch-size 8]
    python benchmarks/bench_generation.py --vs-exponax      # needs `pip install exponax==0.2.0` (extra `bench`)

Each method fills a fresh cache with the same config; the table gives sims/s and the ratio to the local default.
The overhead per simulation is measured with 1-step sims, where scheduling and file writing dominate.

`--vs-exponax`: viscous Burgers (nu 0.01, amplitude 1), pseudo-spectral on a 4x finer grid, cell averages stored:
1D 128 cells x 60 steps of 0.05 (16 sims) and 2D 32x32 x 40 steps of 0.05 (4 sims). Ours: `simulate` on NumPy (the
reference) and compiled on JAX (`backend='jax'`; its one-time compilation timed apart). Exponax: `exponax.stepper.
Burgers` (ETDRK2, 2/3 dealiasing) repeated for the same substeps as ours, `jax.jit` over `jax.vmap` over the sims,
from our initial states, averaged the same way, in float64 like ours; compiled before timing; median of 3 interleaved
repeats (ours includes drawing the initial conditions, Exponax's are drawn before its timer). One thread each (XLA and
BLAS flags set before anything is imported). The last column is the relative L2 difference of the final frames (both
ETDRK2; Exponax advects in conservative form, `∇·(u⊗u)/2`, which differs from `(u·∇)u` in 2D where `∇·u ≠ 0`).
"""

from __future__ import annotations

import os
import sys

if '--vs-exponax' in sys.argv:  # one thread for XLA and BLAS, before numpy or jax are imported
    os.environ['XLA_FLAGS'] = '--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1'
    for _var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
        os.environ[_var] = '1'

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402

from common import machine_line, parse_arguments

from phiml_data import Burgers2D, DataManager  # noqa: E402


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
    p.add_argument('--vs-exponax', action='store_true', help='our solvers against Exponax (see above)')
    args = parse_arguments(p)
    if args.vs_exponax:
        return vs_exponax()
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


def vs_exponax():
    """Our spectral Burgers (NumPy, JAX) and Exponax's, side by side (see the module docstring)."""
    import dataclasses

    import jax
    import numpy as np

    from phiml_data import Burgers1D, simulate

    print(machine_line())
    columns = ['PDE', 'sims', 'ours, NumPy (sims/s)', 'ours, JAX (sims/s)', 'Exponax (sims/s)', 'ours JAX / Exponax']
    print('| ' + ' | '.join(columns + ['compile: ours / Exponax (s)', 'final frames differ by']) + ' |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|')
    cases = [
        (Burgers1D(resolution=128, steps=60, scheme='spectral', refine=4), 16),
        (Burgers2D(resolution=32, steps=40, scheme='spectral', refine=4), 4),
    ]
    for scenario, n in cases:
        sims = list(range(n))
        t0 = time.perf_counter()
        reference = simulate(scenario, sims)
        t_numpy = time.perf_counter() - t0
        fast = dataclasses.replace(scenario, backend='jax')
        t0 = time.perf_counter()
        simulate(fast, list(range(n, 2 * n)))  # compiles the rollout once per process and batch shape
        compile_ours = time.perf_counter() - t0
        with jax.enable_x64(True):
            rollout, initial = _exponax_rollout(scenario, sims)
            t0 = time.perf_counter()
            jax.block_until_ready(rollout(initial))
            compile_theirs = time.perf_counter() - t0
        ours_s, theirs_s = [], []
        for _ in range(3):  # interleaved, median of 3
            t0 = time.perf_counter()
            simulate(fast, sims)  # our initial conditions drawn inside the time, Exponax's before it
            ours_s.append(time.perf_counter() - t0)
            with jax.enable_x64(True):
                t0 = time.perf_counter()
                theirs = np.asarray(rollout(initial), np.float32)
                theirs_s.append(time.perf_counter() - t0)
        t_jax, t_exponax = sorted(ours_s)[1], sorted(theirs_s)[1]
        ours = np.stack([r['velocity'].numpy(r['velocity'].shape.names) for r in reference])[:, -1]
        last = np.moveaxis(theirs[:, -1], 1, -1)
        diff = np.linalg.norm(ours - last) / np.linalg.norm(ours)
        name = f"{len(scenario.spatial_dims)}D {'x'.join(map(str, scenario.resolution))}, {scenario.steps} steps"
        print(
            f"| {name} | {n} | {n / t_numpy:.2f} | {n / t_jax:.2f} | {n / t_exponax:.2f} | {t_exponax / t_jax:.2f}× | "
            f"{compile_ours:.1f} / {compile_theirs:.1f} | {diff:.1e} |"
        )


def _exponax_rollout(scenario, sims):
    """A jitted, vmapped Exponax rollout of `scenario`'s sims (cell averages per step) and its initial states."""
    import exponax
    import jax
    import jax.numpy as jnp
    import numpy as np
    from phiml.backend import NUMPY

    d, refine = len(scenario.spatial_dims), scenario.refine
    n = scenario.resolution[0] * refine
    substeps = scenario.substeps
    stepper = exponax.RepeatedStepper(
        exponax.stepper.Burgers(d, scenario.length, n, scenario.dt / substeps, diffusivity=scenario.viscosity),
        substeps,
    )
    with NUMPY:
        states = [scenario.initial_state(i)['velocity'].values for i in sims]
    order = (*scenario.spatial_dims, 'vector')
    initial = jnp.asarray(np.stack([np.moveaxis(s.numpy(order), -1, 0) for s in states]), jnp.float64)

    def average(u):  # (d, n, ...) -> (d, n / refine, ...) block means
        shape = [d] + [x for _ in range(d) for x in (n // refine, refine)]
        return u.reshape(shape).mean(axis=tuple(2 + 2 * i for i in range(d)))

    def one(u0):
        def body(u, _):
            u = stepper(u)
            return u, average(u)

        _, frames = jax.lax.scan(body, u0, None, length=scenario.steps)
        return jnp.concatenate([average(u0)[None], frames])

    return jax.jit(jax.vmap(one)), initial


if __name__ == '__main__':
    main()
