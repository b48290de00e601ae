"""Recovering a PDE parameter with the physical trainer, on data it did not make.

Usage:
    python benchmarks/bench_physical.py [--config configs/hybrid.yaml] [KEY=VALUE ...] [--noise 0 0.01 0.05] [--sims 8] [--hop 4]
    python benchmarks/bench_physical.py --exponax [--noise 0 0.01 0.05] [--sims 8] [--hop 4] [--refines 4 1]

Default: fits the config's learnable parameters (`physical:` section: first guess, optimizer, `refine`) on the first
`--sims` training sims of the config's cache, once per observation-noise level (`data.noise`: fixed noise of that
fraction of each frame's rms on every training window, as a run adds it). Give `scenario.refine=4` to fit data simulated
4x finer than the cache stores: `physical.refine` (default: the scenario's own) then runs the resolved model, and the
fit through the cache's grid (`physical.refine=1`, the effective coarse-grid value) is printed beside it.

`--exponax`: an independent solver. 1D viscous Burgers (viscosity 0.02, 60 steps of 0.05) simulated by Exponax 0.2.0
(ETDRK2, float64, on a grid 16x finer than the 128 stored cells, from our initial conditions), stored as cell averages,
written in PDEBench's layout (`tensor`, `x-coordinate`, `t-coordinate`, `Nu` = viscosity x pi) and imported
(`import_benchmark`); then fitted from a first guess of 0.05 (one L-BFGS-B epoch of at most 15 iterations over the
windows starting at every 4th frame) by the resolved model (refine 4) and on the cache's grid.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine_line, parse_arguments, training_set

from phiml_data import Burgers1D, DataManager, PhiMLDataset
from phiml_data.config import PhysicalConfig
from phiml_data.physical import PhysicalTrainer


def fit_table(train: PhiMLDataset, config: PhysicalConfig, truth: dict, levels, backend='torch', refines=(None, 1)):
    """Prints one row per noise level and model: the fitted values and their relative error."""
    print('| noise (x rms) | model | parameter | fitted | relative error | seconds |\n|---:|---|---|---:|---:|---:|')
    for level in levels:
        noisy = train.variant(noise=(level, 0))
        for refine in refines:
            physical = PhysicalConfig(**{**dataclasses.asdict(config), 'refine': refine})
            fit = PhysicalTrainer(noisy, None, physical, backend)
            label = f"refine {fit.solver.simulation_grid['x'] // train.scenario.grid_size['x']}"
            t0 = time.perf_counter()
            fit.fit()
            seconds = time.perf_counter() - t0
            for name, value in fit.params().items():
                error = abs(value - truth[name]) / truth[name]
                print(f"| {level:g} | {label} | {name} | {value:.6g} | {error:.2%} | {seconds:.1f} |")


def exponax_file(folder: Path, sims: int) -> tuple[Path, Burgers1D]:
    """Exponax trajectories in PDEBench's layout, and the scenario that describes them (stored on 128 cells)."""
    import h5py
    import jax
    from bench_generation import _exponax_rollout  # benchmarks/ is this script's folder

    fine = Burgers1D(resolution=128, steps=60, dt=0.05, viscosity=0.02, scheme='spectral', refine=16)
    with jax.enable_x64(True):
        rollout, initial = _exponax_rollout(fine, range(sims))
        data = np.asarray(rollout(initial))[:, :, 0, :]  # [sims, time, x]
    path = folder / '1D_Burgers_Sols_Nu0.02_exponax.hdf5'
    dx, n = fine.length / 128, 128
    with h5py.File(path, 'w') as f:  # as PDEBench's generator writes a merged file
        f['tensor'] = data.astype(np.float32)
        f['x-coordinate'] = ((np.arange(n) + 0.5) * dx).astype(np.float32)
        f['t-coordinate'] = (np.arange(fine.frames + 1) * fine.dt).astype(np.float32)
        f.attrs['Nu'] = fine.viscosity * math.pi
    return path, dataclasses.replace(fine, refine=4)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default='configs/hybrid.yaml')
    p.add_argument('--noise', type=float, nargs='+', default=[0.0, 0.01, 0.05])
    p.add_argument('--sims', type=int, default=8)
    p.add_argument('--hop', type=int, default=4, help='windows start at every HOP-th frame (default: %(default)s)')
    p.add_argument('--exponax', action='store_true', help='fit data of an independent solver (see the docstring)')
    p.add_argument('--refines', type=int, nargs='+', help="physical.refine values to fit with (default: the data's, 1)")
    p.add_argument('overrides', nargs='*', help='KEY=VALUE config overrides (before --noise, which takes a list)')
    args = parse_arguments(p)
    print(machine_line())
    if args.exponax:
        from phiml_data.importers import import_benchmark

        folder = Path(tempfile.mkdtemp())
        path, scenario = exponax_file(folder, args.sims)
        dm = DataManager(folder / 'cache', scenario)
        import_benchmark(dm, path, 'pdebench')
        train = PhiMLDataset(dm, n_targets=4, batch_size=32, hop=args.hop)  # 1 parameter needs few windows
        config = PhysicalConfig({'viscosity': 0.05}, epochs=1, iterations=15)
        print(
            f"\nExponax data imported from PDEBench's layout: {len(train.sims)} sims, {len(train)} windows of 4 steps"
        )
        fit_table(train, config, {'viscosity': 0.02}, args.noise, refines=args.refines or (None, 1))
    else:
        cfg, train = training_set(args.config, args.overrides, args.sims)
        train = train.variant(hop=args.hop)
        truth = {n: float(getattr(train.scenario, n)) for n in train.scenario.learnable}
        print(
            f"\n{args.config} {' '.join(args.overrides)}: {len(train.sims)} training sims, {len(train)} windows of "
            f"{cfg.dataset.n_targets} steps; first guess {cfg.physical.initial}, simulated with {truth}"
        )
        refines = args.refines or ((None, 1) if getattr(train.scenario, 'refine', 1) > 1 else (None,))
        fit_table(train, cfg.physical, truth, args.noise, cfg.training.backend, refines)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == '__main__':
    main()
