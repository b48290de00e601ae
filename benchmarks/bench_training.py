"""Training steps per second of a config's model, with its base run different ways, measured in one run.

Usage:
    python benchmarks/bench_training.py [--config configs/default.yaml] [--epochs 1] [--repeats 3] [key=value ...]

Variants, each a fresh `Trainer` on the config's training split (torch, the config's thread count) running its own
epochs (`Trainer.fit`: the updates of a training job, batches from the dataset, no validation): one warm-up epoch
(compilation; the loss's base errors are rolled out and remembered, see `Trainer.base_error`), then `--epochs` timed
epochs, steps over their `train_seconds`; interleaved over `--repeats` rounds (median and range):

- `persistence`: the network alone (no solver): the ceiling.
- `solver_no_gradient`: the coarse solver on the training backend, gradients stopped at it ("NON").
- `solver_gradient`: the coarse solver on the training backend, gradients through it ("SOL").
- `solver_via_numpy`: the previous route, kept here as the baseline: every solver call converts the frame to
  NumPy, steps there and converts back (torch -> NumPy -> torch, no gradient).

The first (warm-up) epoch's rate is printed too: it rolls every window's base out once more.
"""

from __future__ import annotations

import argparse
import os
import statistics

from common import machine_line, parse_arguments, training_set
from phiml import math
from phiml.backend import NUMPY

from phiml_data import Trainer
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


def _steps_per_second(trainer, epochs):
    """`(first, later)`: steps/s of the warm-up epoch and over the `epochs` epochs after it."""
    first = trainer.fit(1)[-1]
    later = trainer.fit(1 + epochs)[1:]
    rate = lambda records: sum(r['steps'] for r in records) / sum(r['train_seconds'] for r in records)
    return rate([first]), rate(later)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default='configs/default.yaml')
    p.add_argument('--epochs', type=int, default=1)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('overrides', nargs='*')
    args = parse_arguments(p)
    print(machine_line())
    cfg, train = training_set(args.config, args.overrides)
    variants = ('persistence', 'solver_no_gradient', 'solver_gradient', 'solver_via_numpy')
    first, later = {v: [] for v in variants}, {v: [] for v in variants}
    for _ in range(args.repeats):
        for v in variants:
            a, b = _steps_per_second(_trainer(cfg, train, v), args.epochs)
            first[v].append(a)
            later[v].append(b)
    print(
        f"\n{args.config}: batch {cfg.dataset.batch_size}, {cfg.dataset.n_targets} unrolled steps, loss "
        f"{cfg.training.loss}, {train.n_batches()} updates per epoch, 1 + {args.epochs} epochs x {args.repeats}"
    )
    print('| variant | steps/s (median) | range | vs the network alone | first epoch |\n|---|---:|---:|---:|---:|')
    ref = statistics.median(later['persistence'])
    for v in variants:
        med = statistics.median(later[v])
        print(
            f"| `{v}` | {med:.2f} | {min(later[v]):.2f}–{max(later[v]):.2f} | {med / ref:.2f}× | "
            f"{statistics.median(first[v]):.2f} |"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == '__main__':
    main()
