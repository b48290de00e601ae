"""The README's table of shipped configs against their baselines, from the `metrics.json` of finished runs.

Usage:
    python benchmarks/summarize_runs.py outputs/default outputs/burgers1d outputs/smoke

Per run and field: the mean relative L2 over the rollout of the model and of every baseline, the model's ratio to the
best baseline, the steps (1-based) at which the best baseline at that step is at least as good as the model, the
model's step-1 and last-step errors with the spread over test sims, and the job's time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from phiml_data.evaluation import BASELINES


def _steps(numbers: list[int]) -> str:
    """`[1, 2, 3, 7]` -> `'1-3, 7'`."""
    runs, start = [], None
    for i, n in enumerate(numbers):
        start = n if start is None else start
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            runs.append(f'{start}' if start == n else f'{start}-{n}')
            start = None
    return ', '.join(runs) or 'none'


def rows(run: Path):
    metrics = json.loads((run / 'metrics.json').read_text())
    for field, per_step in metrics['per_step'].items():
        summary = metrics['summary'][field]
        present = [b for b in BASELINES if b in per_step]
        best = [min(per_step[b][k] for b in present) for k in range(len(per_step['model']))]
        losing = [k + 1 for k, (m, b) in enumerate(zip(per_step['model'], best)) if m >= b]
        spread = per_step['spread']['model']
        yield (
            run.name,
            field,
            f"{summary['model']:.4f}",
            *(f'{summary[b]:.4f}' if b in summary else '–' for b in BASELINES),
            f"**{summary['model_over_best_baseline']:.2f}×** ({summary['best_baseline'].replace('_', ' ')})",
            _steps(losing),
            f"{per_step['model'][0]:.3g} ({spread['min'][0]:.3g}–{spread['max'][0]:.3g})",
            f"{per_step['model'][-1]:.3f} ({spread['min'][-1]:.3f}–{spread['max'][-1]:.3f})",
            f"{metrics['seconds']['total']:.0f} s",
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('runs', nargs='+', type=Path)
    args = p.parse_args()
    head = ['run', 'field', 'model', *(b.replace('_', ' ') for b in BASELINES), 'model / best baseline']
    head += ['steps where a baseline is as good', 'model step 1 (range over sims)', 'model last step (range)', 'job']
    print('| ' + ' | '.join(head) + ' |')
    print('|' + '---|' * len(head))
    for run in args.runs:
        for row in rows(run):
            print('| ' + ' | '.join(row) + ' |')


if __name__ == '__main__':
    main()
