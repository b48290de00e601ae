"""Spread of a config's result over training seeds: the same data and split, different network initialisation and
window order (`training.seed` and `dataset.seed` set to each seed).

Usage:
    python benchmarks/bench_seeds.py --config configs/default.yaml [--seeds 0 1 2] [--name NAME] [key=value ...]

Each seed runs the whole main job (the cache is shared, so only the first run simulates) into
`outputs/seeds/<name>-seed<N>/` (`--name`, default the config's name), then one table lists per field the model's mean relative L2, the best baseline
and their ratio per seed, with the mean and the sample standard deviation over the seeds, and whether every seed
beats the best baseline at every step.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from common import machine_line, parse_arguments

from phiml_data.cli import parse_overrides
from phiml_data.config import load_run_config
from phiml_data.pipeline import run_pipeline


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default='configs/default.yaml')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--name', help='name of this study in outputs/seeds/ (default: the config file name)')
    p.add_argument('overrides', nargs='*', help='key=value, as for `phiml-data run`')
    args = parse_arguments(p)
    name = args.name or Path(args.config).stem
    print(machine_line())
    results = {}
    for seed in args.seeds:
        overrides = parse_overrides([*args.overrides, f'training.seed={seed}', f'dataset.seed={seed}'])
        overrides['training']['progress'] = False
        cfg = load_run_config(args.config, overrides)
        results[seed] = run_pipeline(cfg, output=f'outputs/seeds/{name}-seed{seed}', progress=False)['summary']
    print(f"\n{name}: seeds {args.seeds}")
    print('| field | seed | model | best baseline | model / best baseline | better at every step |')
    print('|---|---:|---:|---:|---:|---|')
    for field in results[args.seeds[0]]:
        rows = [results[s][field] for s in args.seeds]
        for seed, m in zip(args.seeds, rows):
            best = m[m['best_baseline']]
            print(
                f"| {field} | {seed} | {m['model']:.4f} | {best:.4f} ({m['best_baseline']}) | "
                f"{m['model_over_best_baseline']:.3f} | {m['beats_best_baseline_every_step']} |"
            )
        ratios = [m['model_over_best_baseline'] for m in rows]
        spread = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
        every = all(m['beats_best_baseline_every_step'] for m in rows)
        print(f"| {field} | mean ± std | | | {statistics.mean(ratios):.3f} ± {spread:.3f} | all seeds: {every} |")


if __name__ == '__main__':
    main()
