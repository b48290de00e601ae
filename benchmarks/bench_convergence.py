"""Convergence study: how far the cached trajectories are from the same data simulated on a 2x finer grid.

Usage:
    python benchmarks/bench_convergence.py [--sims 3] [--full] [--smoke [--cfl-only] | --research | --exponax] [--backend numpy]

For 1D Burgers (as `configs/burgers1d.yaml`: 128 cells, 60 steps of 0.05, nu = 0.01) and 2D Burgers (as
`configs/default.yaml`: 32x32, 40 steps of 0.05), prints the relative L2 difference between the stored trajectories at
successive refinements of the spectral scheme (`scheme='spectral'`, `refine` r vs 2r; maximum over frames, mean and
maximum over sims). PhiFlow's scheme starts from another initial draw, so it is not compared here (issue #12's audit
measured it against its own converged reference). `--full` adds 2D refine 8 (about a minute per sim on 2 cores).

`--research`: 2D Burgers as `configs/burgers2d_research.yaml` (64x64, 100 steps of 0.02, nu = 0.005), refine 1, 2, 4 (and 8
with `--full`, several minutes per sim).

`--smoke`: the smoke plume as `configs/smoke.yaml` (32x32, 30 steps of 1.0) against the same plume (same inflow disc,
position and rate) at 64x64 with steps of 0.5 (and 128x128, steps of 0.25, with `--full`), the finer frames at the
same times averaged over 2x2 cells: relative L2 of density and of the cell-centred velocity, maximum over frames;
and the CFL number `max |u| dt / dx` (faces, all frames) of each shipped-size sim, its range over the sims
(`--cfl-only`: only that, e.g. `--sims 12`).

`--exponax`: an independent reference. The shipped Burgers data (refine 4) against Exponax's ETDRK2 solver (0.2.0,
float64, extra `bench`) started from the same continuous initial condition on a much finer grid (1D: 32x, 4096
cells; 2D: 16x, 512x512; time steps as fine as the grid demands) and averaged to the training grid.

Burgers runs on `--backend` (default `jax`, as the shipped configs generate; `numpy` is the reference).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import machine_line, parse_arguments

from phiml_data import Burgers1D, Burgers2D, SmokePlume, simulate, to_field


def trajectories(scenario, sims) -> np.ndarray:
    """`[sims, time, *space, vector]` float64."""
    order = ('time', *scenario.spatial_dims, 'vector')
    return np.stack([s['velocity'].numpy(order).astype(np.float64) for s in simulate(scenario, sims)])


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per sim, the maximum over frames of `||a - b|| / ||b||` (frames where `b` is 0, e.g. smoke at rest, left out)."""
    axes = tuple(range(2, a.ndim))
    norm = np.sqrt((b**2).sum(axes))
    return np.where(norm > 0, np.sqrt(((a - b) ** 2).sum(axes)) / np.where(norm > 0, norm, 1), 0).max(1)


def coarsen(a: np.ndarray, factor: int, spatial_axes: int) -> np.ndarray:
    """Averages blocks of `factor` cells along the last `spatial_axes` axes of `a [..., *space]`."""
    lead = a.shape[: a.ndim - spatial_axes]
    blocks = [x for n in a.shape[len(lead) :] for x in (n // factor, factor)]
    return a.reshape(*lead, *blocks).mean(axis=tuple(len(lead) + 1 + 2 * i for i in range(spatial_axes)))


def smoke_frames(scenario, sims, every: int) -> dict[str, np.ndarray]:
    """Density `[sims, time, x, y]` and cell-centred velocity `[sims, time, x, y, 2]` (PhiFlow's `at_centers` of the
    stored staggered grid), every `every`-th frame."""
    out, metadata = {'density': [], 'velocity': [], 'cfl': []}, scenario.metadata(0)
    dx = scenario.length / scenario.resolution[0]
    for sim in simulate(scenario, sims):
        out['cfl'].append(float(np.abs(sim['velocity'].numpy('time,x,y,vector')).max()) * scenario.dt / dx)
        out['density'].append(sim['density'].numpy('time,x,y')[::every].astype(np.float64))
        centred = to_field(sim['velocity'], metadata, 'velocity').at_centers().values
        out['velocity'].append(centred.numpy('time,x,y,vector')[::every].astype(np.float64))
    return {k: np.stack(v) for k, v in out.items()}


def smoke_study(sims, full: bool, cfl_only: bool = False):
    base = dict(resolution=32, steps=30, dt=1.0, buoyancy=0.5)
    runs = {}
    for factor in (1, 2, 4) if full else (1, 2):
        t = time.perf_counter()
        scenario = SmokePlume(**{**base, 'resolution': 32 * factor, 'steps': 30 * factor, 'dt': 1.0 / factor})
        runs[factor] = smoke_frames(scenario, sims, factor)
        seconds = time.perf_counter() - t
        if factor == 1:
            cfl = runs[1].pop('cfl')
            print(
                f"| smoke CFL max|u| dt/dx | {len(sims)} sims at 32², dt 1 | {cfl.min():.2f} – {cfl.max():.2f} (range) | {seconds:.1f} |"
            )
            if cfl_only:
                return
            continue
        runs[factor].pop('cfl')
        for name, fine in runs[factor].items():
            coarse = runs[factor // 2][name]
            if name == 'velocity':
                fine, coarse = np.moveaxis(fine, -1, 2), np.moveaxis(coarse, -1, 2)
            d = difference(coarsen(coarse, factor // 2, 2), coarsen(fine, factor, 2))  # both on the 32x32 grid
            label = f"{32 * factor // 2}² dt {2.0 / factor:g} vs {32 * factor}² dt {1.0 / factor:g}"
            print(f"| smoke {name} | {label} | {d.mean():.4f} / {d.max():.4f} | {seconds:.1f} |")


def exponax_reference(sims, backend: str):
    """The shipped Burgers data against Exponax on a much finer grid (see the module docstring)."""
    import jax
    from bench_generation import _exponax_rollout  # benchmarks/ is this script's folder

    cases = [
        (Burgers1D, dict(resolution=128, steps=60, dt=0.05, viscosity=0.01), 32),
        (Burgers2D, dict(resolution=32, steps=40, dt=0.05, viscosity=0.01), 16),
    ]
    for cls, params, refine in cases:
        ours = trajectories(cls(**params, scheme='spectral', refine=4, backend=backend), sims)
        t = time.perf_counter()
        with jax.enable_x64(True):
            rollout, initial = _exponax_rollout(cls(**params, scheme='spectral', refine=refine), sims)
            reference = np.moveaxis(np.asarray(rollout(initial)), 2, -1)  # [sims, time, *space, vector]
        d = difference(ours, reference)
        print(
            f"| {cls.name} {params['resolution']} | shipped (refine 4) vs Exponax ETDRK2 at refine {refine} | "
            f"{d.mean():.4f} / {d.max():.4f} | {time.perf_counter() - t:.1f} |"
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sims', type=int, default=3)
    p.add_argument('--full', action='store_true')
    p.add_argument('--smoke', action='store_true', help='the smoke plume instead of Burgers')
    p.add_argument('--cfl-only', action='store_true', help='with --smoke: only the CFL range at the shipped size')
    p.add_argument('--research', action='store_true', help='2D Burgers at the research config size')
    p.add_argument('--backend', default='jax', choices=['numpy', 'jax'], help='what simulates Burgers')
    p.add_argument('--exponax', action='store_true', help='the shipped Burgers data against a fine Exponax reference')
    args = parse_arguments(p)
    sims = list(range(args.sims))
    print(machine_line())
    print('\n| scenario | compared | max over frames of relative L2 (mean / max over sims) | seconds for the finer |')
    print('|---|---|---:|---:|')
    if args.smoke:
        return smoke_study(sims, args.full, args.cfl_only)
    if args.exponax:
        return exponax_reference(sims, args.backend)
    research = [
        (Burgers2D, dict(resolution=64, steps=100, dt=0.02, viscosity=0.005), (1, 2, 4, 8) if args.full else (1, 2, 4))
    ]
    shipped = [
        (Burgers1D, dict(resolution=128, steps=60, dt=0.05, viscosity=0.01), (1, 2, 4, 8)),
        (Burgers2D, dict(resolution=32, steps=40, dt=0.05, viscosity=0.01), (1, 2, 4, 8) if args.full else (1, 2, 4)),
    ]
    cases = research if args.research else shipped
    for cls, params, refinements in cases:
        runs = {}
        for r in refinements:
            t = time.perf_counter()
            runs[r] = trajectories(cls(**params, scheme='spectral', refine=r, backend=args.backend), sims)
            seconds = time.perf_counter() - t
            if r // 2 in runs:
                d = difference(runs[r // 2], runs[r])
                print(
                    f"| {cls.name} {params['resolution']} | spectral refine {r // 2} vs {r} | {d.mean():.4f} / {d.max():.4f} | {seconds:.1f} |"
                )


if __name__ == '__main__':
    main()
