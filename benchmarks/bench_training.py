"""Training steps per second of a config's model, with its base run different ways, measured in one run.

Usage:
    python benchmarks/bench_training.py [--config configs/default.yaml] [--steps 30] [key=value ...]

Variants, each a fresh `Trainer` on the config's training split (torch, the config's thread count), timed over
`--steps` updates after 3 warm-up updates, interleaved over `--repeats` rounds (median and range):

- `persistence`: the network alone (no solver): the ceiling.
- `solver_no_gradient`: the coarse solver on the training backend, gradients stopped at it ("NON").
- `solver_gradient`: the coarse solver on the training backend, gradients through it ("SOL").
- `solver_via_numpy`: the previous route, kept here as the baseline: every solver call converts the frame to
  NumPy, steps there and converts back (torch -> NumPy -> torch, no gradient).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from common import machine_line, parse_arguments, training_set
from phiml import math, nn
from phiml.backend import NUMPY

from phiml_data import Trainer
from phiml_data.backends import threads
from phiml_data.surrogate import solver_step


def _via_numpy(train, backend):
    step = solver_step(train, gradient=False)

    def base(frame):
        with NUMPY:
            out = step(math.convert(math.stop_gradient(frame), NUMPY))
        return math.convert(out, backend)

    return base


def _trainer(cfg, train, variant):
    import dataclasses

    model = dataclasses.replace(cfg.model, base='persistence' if variant == 'persistence' else 'coarse_solver')
    training = dataclasses.replace(cfg.training, progress=False, solver_gradient=variant == 'solver_gradient')
    trainer = Trainer(train, None, model, training)
    if variant == 'solver_via_numpy':
        trainer.surrogate.base = _via_numpy(train, trainer.backend)
    return trainer


def _steps_per_second(trainer, batches, steps):
    with trainer.backend, threads(trainer.backend, trainer.config.threads):
        for b in batches[:3]:
            nn.update_weights(trainer.net, trainer.optimizer, trainer.loss, b['initial_state'], b['targets'])
        t0 = time.perf_counter()
        for i in range(steps):
            b = batches[i % len(batches)]
            nn.update_weights(trainer.net, trainer.optimizer, trainer.loss, b['initial_state'], b['targets'])
        return steps / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default='configs/default.yaml')
    p.add_argument('--steps', type=int, default=30)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('overrides', nargs='*')
    args = parse_arguments(p)
    print(machine_line())
    cfg, train = training_set(args.config, args.overrides)
    batches = list(train.iterate_batches(epoch=0, prefetch=0))
    variants = ('persistence', 'solver_no_gradient', 'solver_gradient', 'solver_via_numpy')
    rates = {v: [] for v in variants}
    for _ in range(args.repeats):
        for v in variants:
            rates[v].append(_steps_per_second(_trainer(cfg, train, v), batches, args.steps))
    print(
        f"\n{args.config}: batch {cfg.dataset.batch_size}, {cfg.dataset.n_targets} unrolled steps, {args.steps} updates x {args.repeats}"
    )
    print('| variant | steps/s (median) | range | vs solver_via_numpy |\n|---|---:|---:|---:|')
    ref = statistics.median(rates['solver_via_numpy'])
    for v in variants:
        med = statistics.median(rates[v])
        print(f"| `{v}` | {med:.2f} | {min(rates[v]):.2f}–{max(rates[v]):.2f} | {med / ref:.2f}× |")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == '__main__':
    main()
