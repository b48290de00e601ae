"""The main job: simulate -> cache -> split -> dataset -> train -> evaluate -> plots, driven by one `RunConfig`.

Writes to the output folder:

| file                      | content                                                              |
|---------------------------|----------------------------------------------------------------------|
| `config.yaml`             | the resolved configuration                                           |
| `splits.json`             | train / val / test sims; per split generated fraction and noise; generated initial conditions |
| `history.json`            | per epoch: train and validation loss, learning rate, seconds, steps  |
| `checkpoints/{best,last}` | the network's commits: weights, optimizer, state (`checkpoints`)     |
| `physical/`, `hybrid/`    | modes physical / hybrid: the physical model's history and checkpoints, the cycle commits |
| `parameters.png`          | modes physical / hybrid: the fitted parameters per epoch              |
| `metrics.json`            | per-step and mean relative L2 of model and baselines, spread, timings |
| `evaluation.csv`          | per-step relative L2 table                                           |
| `loss.png`, `errors.png`, `rollout_<field>.png`, `.gif` | plots (animation with `evaluation.animate`) |
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from .config import ConfigError, RunConfig
from .manifest import write_json


def run_pipeline(cfg: RunConfig, output=None, progress: bool = True) -> dict:
    """Runs the whole pipeline for `cfg`; reuses whatever is cached. Returns the metrics dict.

    The training mode (`modes.MODES[cfg.training.mode]`) is checked first, before anything is simulated. Under
    `torchrun --nproc-per-node N` (torch backend), every rank trains its shard of the training set with averaged
    gradients; rank 0 generates, evaluates and writes everything, the other ranks return `{}`."""
    import yaml

    from . import distributed, plots
    from .dataset import PhiMLDataset
    from .evaluation import summarize
    from .modes import mode_of
    from .splits import record_split, split_sims

    if not progress:
        cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, progress=False))
    mode = mode_of(cfg)
    rank, world = distributed.init_from_environment() if cfg.training.backend == 'torch' else (0, 1)
    out = Path(output or cfg.output)
    splits = split_sims(range(cfg.data.n_sims), cfg.data.split, cfg.data.split_seed)
    check_test_split(cfg, splits['test'])
    t_start = time.perf_counter()
    dm = cfg.data_manager()
    if rank == 0:  # under torchrun, rank 0 prepares and writes; every rank trains its shard
        out.mkdir(parents=True, exist_ok=True)
        (out / 'config.yaml').write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        dm.generate(cfg.data.n_sims, progress=progress)
        record_split(dm, splits, cfg.data.split, cfg.data.split_seed)
        generated = mode.generated(cfg)
        write_json(
            out / 'splits.json',
            {
                **splits,
                'generated_fraction': {
                    'train': generated['fraction'],
                    **({'train_physical': generated['physical_fraction']} if 'physical_fraction' in generated else {}),
                    'val': 0.0,
                    'test': 0.0,
                },
                'generated_state_indices': generated['new_state_indices'],  # initial conditions in no split
                'noise': {'train': cfg.data.noise, 'val': cfg.data.noise, 'test': 0.0},
            },
        )
    distributed.barrier()
    t_sim = time.perf_counter() - t_start

    noise = (cfg.data.noise, cfg.data.split_seed)
    train = PhiMLDataset(dm, splits['train'], cfg.dataset, shard=(rank, world), noise=noise)
    val = train.variant(sims=splits['val'], shard=(0, 1), shuffle=False, augment=False) if splits['val'] else None
    t0 = time.perf_counter()
    outcome = mode.train(cfg, train, val, out)
    t_train = time.perf_counter() - t0
    history = outcome.history
    steps = sum(r['steps'] for r in history)
    distributed.barrier()
    if rank != 0:
        return {}

    test_sims = splits['test']
    metrics = evaluate_and_plot(cfg, outcome.model, test_sims, out)
    plots.plot_history(history, out / 'loss.png')
    for name, draw in outcome.figures.items():
        draw(out / name)
    result = {
        'cache': str(dm.directory),
        'test_sims': test_sims,
        'rollout_steps': metrics['steps'],
        'summary': summarize(metrics),
        'per_step': metrics['fields'],
        'fitted_solver_parameters': metrics['fitted_parameters'],
        'seconds': {'simulation': t_sim, 'training': t_train, 'total': time.perf_counter() - t_start},
        'train_steps': steps,
        'train_steps_per_second': steps / t_train if t_train else None,
        'final_train_loss': history[-1]['train_loss'] if history else None,
        'final_val_loss': history[-1]['val_loss'] if history else None,
        'mode': cfg.training.mode,
        **outcome.metrics,
        'versions': _versions(),
        'machine': machine(),
    }
    write_json(out / 'metrics.json', result)
    _report(result, out)
    return result


def check_test_split(cfg: RunConfig, test_sims: list):
    """Refuses a run whose test split is smaller than `evaluation.min_test_sims` (a mean over 1 or 2 sims says
    little), naming the keys that decide it."""
    if len(test_sims) < max(cfg.evaluation.min_test_sims, 1):
        raise ConfigError(
            f"data.split: the test split has {len(test_sims)} sims (data.n_sims={cfg.data.n_sims}, "
            f"data.split={list(cfg.data.split)}); evaluation.min_test_sims={cfg.evaluation.min_test_sims}. Raise "
            f"data.n_sims or the test fraction data.split[2]"
            + (" (the test split is empty)." if not test_sims else ", or lower evaluation.min_test_sims knowingly.")
        )


def evaluate_and_plot(cfg: RunConfig, model, sims: list[int], out: Path) -> dict:
    """Rolls `model` (a `Trainer` or `PhysicalTrainer`) out on `sims` against truth and baselines; writes
    `evaluation.csv`, `errors.png` and `rollout_<field>.png` (and `.gif`) to `out`; returns the metrics."""
    import matplotlib.pyplot as plt

    from . import plots
    from .evaluation import evaluate, write_table

    metrics = evaluate(model.surrogate, model.train, sims, cfg.evaluation.rollout_steps)
    write_table(metrics, out / 'evaluation.csv')
    scenario = model.train.scenario
    plots.plot_errors(metrics, out / 'errors.png', dt=scenario.dt)
    truth, pred = model.train.layout.unpack(metrics['truth']), model.train.layout.unpack(metrics['prediction'])
    for field in truth:
        for i in range(min(cfg.evaluation.plot_sims, len(sims))):
            suffix = f'_{sims[i]}' if cfg.evaluation.plot_sims > 1 else ''
            pair = ({field: truth[field].batch[i]}, {field: pred[field].batch[i]}, field, scenario.metadata(sims[i]))
            rows = {name: {field: values[field].batch[i]} for name, values in metrics['rollouts'].items()}
            plots.plot_rollout(*pair, path=out / f'rollout_{field}{suffix}.png', baseline=rows)
            if cfg.evaluation.animate and truth[field].shape.spatial.rank == 2:
                plots.animate_rollout(*pair, path=out / f'rollout_{field}{suffix}.gif')
    plt.close('all')
    return metrics


def load_model(cfg: RunConfig, run: Path, checkpoint: str = 'best'):
    """The model a finished run (output folder `run`, its `config.yaml` parsed as `cfg`) evaluates, from its
    checkpoint `checkpoint` (`'best'` or `'last'`), as its training mode loads it.

    Raises:
        CheckpointError: The checkpoint is missing, damaged, or of another configuration than `config.yaml` says.
    """
    from .dataset import PhiMLDataset
    from .modes import mode_of

    splits = json.loads((Path(run) / 'splits.json').read_text())
    train = PhiMLDataset(cfg.data_manager(), splits['train'], cfg.dataset)  # statistics and damping from training sims
    return mode_of(cfg).load(cfg, train, Path(run), checkpoint)


def machine() -> dict:
    """The processor a run's trained numbers came from: its model name, core count and the instruction-set flags
    that select different floating-point kernels (`/proc/cpuinfo` on Linux; `platform` elsewhere). The data and the
    baselines are identical across machines; trained models differ in their last bits, which grow along a training."""
    import platform

    info = {'processor': platform.processor() or platform.machine(), 'cores': os.cpu_count(), 'flags': []}
    try:
        text = Path('/proc/cpuinfo').read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(':')
        if key.strip() == 'model name':
            info['processor'] = value.strip()
        elif key.strip() == 'flags':
            info['flags'] = sorted(f for f in value.split() if f.startswith(_KERNEL_FLAGS))
            break
    return info


_KERNEL_FLAGS = ('sse4', 'avx', 'fma', 'amx', 'f16c')  # what BLAS and torch dispatch their kernels on


def _versions() -> dict[str, str]:
    """Python and the versions of the packages a run's numbers depend on (`importlib.metadata`)."""
    import platform
    from importlib import metadata

    packages = ('phiml_data', 'phiml', 'phiflow', 'numpy', 'scipy', 'torch', 'jax', 'jaxlib', 'h5py')
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {'python': platform.python_version(), **found}


def _report(result: dict, out: Path):
    s = result['seconds']
    print(f"wrote {out}: config.yaml, splits.json, history.json, checkpoints/, metrics.json, evaluation.csv, *.png")
    print(
        f"time: simulation {s['simulation']:.1f} s, training {s['training']:.1f} s "
        f"({result['train_steps_per_second'] or 0:.1f} steps/s), total {s['total']:.1f} s"
    )
    from .evaluation import BASELINES

    for name, p in result.get('parameters', {}).items():
        print(
            f"{name}: fitted {p['fitted']:.5g} from {p['initial']:.5g} (simulated with {p['simulated_with']:.5g}: "
            f"relative error {p['relative_error']:.2%})"
        )
    if 'fit' in result:
        fit = result['fit']
        print(
            f"physical fit: {'converged' if fit['converged'] else 'NOT converged'} ({fit['stop']})"
            + (f"; {len(fit['warnings'])} warnings (metrics.json 'fit')" if fit['warnings'] else '')
        )

    for field, m in result['summary'].items():
        baselines = ', '.join(f"{n.replace('_', ' ')} {m[n]:.4f}" for n in BASELINES if n in m)
        print(
            f"{field}: mean relative L2 over {result['rollout_steps']} steps on test sims {result['test_sims']}: "
            f"model {m['model']:.4f}; {baselines}; model/best baseline ({m['best_baseline']}) = "
            f"{m['model_over_best_baseline']:.2f}, model/persistence = {m['model_over_persistence']:.2f}; "
            f"beats the best baseline at every step: {m['beats_best_baseline_every_step']}"
        )
