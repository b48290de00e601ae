"""The README's table of shipped configs against their baselines, from the `metrics.json` of finished runs.

Usage:
    python benchmarks/summarize_runs.py outputs/default outputs/burgers1d outputs/smoke
    python benchmarks/summarize_runs.py --group NON outputs/seeds/default-non-seed* --group SOL outputs/seeds/default-sol-seed*

Per run and field: the mean relative L2 over the rollout of the model and of every baseline, the model's ratio to the
best baseline, the steps (1-based) at which the best baseline at that step is at least as good as the model, the
model's step-1 and last-step errors with the spread over test sims, and the job's time.

`--group NAME RUN...` (repeatable): per rollout step, each group's model error as mean ± std over its runs (e.g. training
seeds), next to the best baseline, and the steps where that baseline is at least as good as the group's mean;
`--plot PATH` also draws the groups' errors per step (mean, min-max band over runs) with the fitted solver's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import parse_arguments

from phiml_data.evaluation import BASELINES
from phiml_data.plots import plot_error_groups


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


def load_groups(groups: list[list[str]]) -> dict[str, list[dict]]:
    """`--group NAME RUN...` arguments -> `{NAME: [metrics.json of each RUN]}`."""
    return {g[0]: [json.loads((Path(r) / 'metrics.json').read_text()) for r in g[1:]] for g in groups}


def per_step(groups: dict[str, list[dict]], steps=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 40)):
    """Prints the per-step table of `--group` (see the module docstring) for `load_groups(...)`."""
    import statistics

    runs = dict(groups)
    first = next(iter(runs.values()))[0]
    for field, m in first['per_step'].items():
        present = [b for b in BASELINES if b in m]
        n = len(m['model'])
        best = [min(present, key=lambda b: m[b][k]) for k in range(n)]
        print(f"\n{field}: model error per rollout step, mean ± std over runs; best baseline per step")
        print('| step | ' + ' | '.join(runs) + ' | best baseline |\n|---:|' + '---:|' * len(runs) + '---|')
        means = {}
        for name, group in runs.items():
            errors = [[r['per_step'][field]['model'][k] for r in group] for k in range(n)]
            means[name] = [statistics.mean(e) for e in errors]
            runs[name] = (group, errors)
        for k in [s - 1 for s in steps if s <= n]:
            cells = [
                f"{means[g][k]:.3g} ± {statistics.stdev(runs[g][1][k]) if len(runs[g][1][k]) > 1 else 0:.2g}"
                for g in runs
            ]
            print(f"| {k + 1} | " + ' | '.join(cells) + f" | {m[best[k]][k]:.3g} ({best[k].replace('_', ' ')}) |")
        for g in runs:
            losing = [k + 1 for k in range(n) if means[g][k] >= m[best[k]][k]]
            overall = statistics.mean(means[g]) / min(statistics.mean(m[b]) for b in present)
            per_run = [statistics.mean(r['per_step'][field]['model']) for r in runs[g][0]]
            spread = statistics.stdev(per_run) if len(per_run) > 1 else 0.0
            print(
                f"{g}: {len(runs[g][0])} runs; mean over the rollout {statistics.mean(per_run):.4f} ± {spread:.4f} "
                f"(per run {', '.join(f'{v:.4f}' for v in per_run)}), {overall:.3f}x the best baseline; steps where a "
                f"baseline is as good: {_steps(losing)}"
            )
            for name in runs[g][0][0].get('parameters', {}):
                fits = [(r['parameters'][name]['fitted'], r['parameters'][name]['relative_error']) for r in runs[g][0]]
                print(
                    f"{g}: {name} fitted {', '.join(f'{v:.5g}' for v, _ in fits)} (relative error "
                    f"{', '.join(f'{e:.1%}' for _, e in fits)}; simulated with "
                    f"{runs[g][0][0]['parameters'][name]['simulated_with']:g})"
                )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('runs', nargs='*', type=Path)
    p.add_argument('--group', action='append', nargs='+', metavar=('NAME', 'RUN'), help='a named group of runs')
    p.add_argument('--plot', type=Path, help="with --group: a PNG of the groups' errors per step")
    args = parse_arguments(p)
    if args.group:
        groups = load_groups(args.group)
        if args.plot:
            plot_error_groups(groups, args.plot)
        return per_step(groups)
    head = ['run', 'field', 'model', *(b.replace('_', ' ') for b in BASELINES), 'model / best baseline']
    head += ['steps where a baseline is as good', 'model step 1 (range over sims)', 'model last step (range)', 'job']
    print('| ' + ' | '.join(head) + ' |')
    print('|' + '---|' * len(head))
    for run in args.runs:
        for row in rows(run):
            print('| ' + ' | '.join(row) + ' |')


if __name__ == '__main__':
    main()
