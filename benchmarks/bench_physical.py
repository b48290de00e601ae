"""Recovering a PDE parameter with the physical trainer: from clean cached data and with noise added to the data.

Usage:
    python benchmarks/bench_physical.py [--config configs/hybrid.yaml] [--noise 0 0.01 0.05] [--sims 8]

Fits the config's learnable parameters (`physical:` section: first guess, optimizer) on the first `--sims` training
sims, once per noise level: every window's initial state and targets get Gaussian noise of `noise` times the
field's rms (a fresh draw per window and epoch, seeded). Prints the fitted values, their relative error against the
values the data were simulated with, and the time.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from common import machine_line, training_set
from phiml import math

from phiml_data import PhiMLDataset
from phiml_data.physical import PhysicalTrainer


class NoisyWindows:
    """A `PhiMLDataset` whose batches carry Gaussian noise of `level` times each channel's rms (normalised units)."""

    def __init__(self, dataset: PhiMLDataset, level: float):
        self.dataset, self.level = dataset, level

    def __getattr__(self, name):
        return getattr(self.dataset, name)

    def iterate_batches(self, epoch: int = 0, **kwargs):
        rng = np.random.default_rng([epoch, int(self.level * 1e6)])
        for b in self.dataset.iterate_batches(epoch=epoch, **kwargs):
            noisy = {}
            for key in ('initial_state', 'targets'):
                t = b[key]
                rms = math.sqrt(math.mean(t**2, t.shape.without('channels')))
                noise = math.tensor(rng.standard_normal(t.shape.sizes).astype(np.float32), t.shape)
                noisy[key] = t + self.level * rms * noise
            yield {**b, **noisy}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default='configs/hybrid.yaml')
    p.add_argument('--noise', type=float, nargs='+', default=[0.0, 0.01, 0.05])
    p.add_argument('--sims', type=int, default=8)
    p.add_argument('overrides', nargs='*')
    args = p.parse_args()
    print(machine_line())
    cfg, train = training_set(args.config, args.overrides, args.sims)
    scenario = train.scenario
    truth = {n: float(getattr(scenario, n)) for n in scenario.learnable}
    print(
        f"\n{args.config}: {len(train.sims)} training sims, {len(train)} windows of {cfg.dataset.n_targets} steps; "
        f"first guess {cfg.physical.initial}, simulated with {truth}, optimizer {cfg.physical.optimizer}"
    )
    print('| noise (x rms) | parameter | fitted | relative error | seconds |\n|---:|---|---:|---:|---:|')
    for level in args.noise:
        fit = PhysicalTrainer(NoisyWindows(train, level) if level else train, None, cfg.physical, cfg.training.backend)
        t0 = time.perf_counter()
        fit.fit()
        seconds = time.perf_counter() - t0
        for name, value in fit.params().items():
            print(
                f"| {level:g} | {name} | {value:.6g} | {abs(value - truth[name]) / truth[name]:.2e} | {seconds:.1f} |"
            )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == '__main__':
    main()
