"""Convergence study: how far the cached trajectories are from the same data simulated on a 2x finer grid.

Usage:
    python benchmarks/bench_convergence.py [--sims 3] [--full]

For 1D Burgers (as `configs/burgers1d.yaml`: 128 cells, 60 steps of 0.05, nu = 0.01) and 2D Burgers (as
`configs/default.yaml`: 32x32, 40 steps of 0.05), prints the relative L2 difference between the stored trajectories at
successive refinements of the spectral scheme (`scheme='spectral'`, `refine` r vs 2r; maximum over frames, mean and
maximum over sims). PhiFlow's scheme starts from another initial draw, so it is not compared here (issue #12's audit
measured it against its own converged reference). `--full` adds 2D refine 8 (about a minute per sim on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from phiml_data import Burgers1D, Burgers2D, simulate


def trajectories(scenario, sims) -> np.ndarray:
    """`[sims, time, *space, vector]` float64."""
    order = ('time', *scenario.spatial_dims, 'vector')
    return np.stack([s['velocity'].numpy(order).astype(np.float64) for s in simulate(scenario, sims)])


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per sim, the maximum over frames of `||a - b|| / ||b||`."""
    axes = tuple(range(2, a.ndim))
    return (np.sqrt(((a - b) ** 2).sum(axes)) / np.sqrt((b**2).sum(axes))).max(1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sims', type=int, default=3)
    p.add_argument('--full', action='store_true')
    args = p.parse_args()
    sims = list(range(args.sims))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d %H:%M')}")
    print('\n| scenario | compared | max over frames of relative L2 (mean / max over sims) | seconds for the finer |')
    print('|---|---|---:|---:|')
    cases = [
        (Burgers1D, dict(resolution=128, steps=60, dt=0.05, viscosity=0.01), (1, 2, 4, 8)),
        (Burgers2D, dict(resolution=32, steps=40, dt=0.05, viscosity=0.01), (1, 2, 4, 8) if args.full else (1, 2, 4)),
    ]
    for cls, params, refinements in cases:
        runs = {}
        for r in refinements:
            t = time.perf_counter()
            runs[r] = trajectories(cls(**params, scheme='spectral', refine=r), sims)
            seconds = time.perf_counter() - t
            if r // 2 in runs:
                d = difference(runs[r // 2], runs[r])
                print(
                    f"| {cls.name} {params['resolution']} | spectral refine {r // 2} vs {r} | {d.mean():.4f} / {d.max():.4f} | {seconds:.1f} |"
                )


if __name__ == '__main__':
    main()
