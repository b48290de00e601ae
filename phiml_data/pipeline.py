"""The main job: simulate -> cache -> split -> dataset -> train -> evaluate -> plots, driven by one `RunConfig`.

Writes to the output folder:

| file                      | content                                                              |
|---------------------------|----------------------------------------------------------------------|
| `config.yaml`             | the resolved configuration                                           |
| `splits.json`             | train / val / test sim indices; the fraction of generated windows in each (hybrid: train only) |
| `history.json`            | per epoch: train and validation loss, learning rate, seconds, steps  |
| `checkpoints/{best,last}` | network, optimizer and training state                                |
| `physical/`, `hybrid/`    | modes physical / hybrid: the physical model's history and checkpoint, the cycle log |
| `parameters.png`          | modes physical / hybrid: the fitted parameters per epoch              |
| `metrics.json`            | per-step and mean relative L2 of model and baselines, spread, timings |
| `evaluation.csv`          | per-step relative L2 table                                           |
| `loss.png`, `errors.png`, `rollout_<field>.png`, `.gif` | plots (animation with `evaluation.animate`) |
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from .config import RunConfig


def run_pipeline(cfg: RunConfig, output=None, progress: bool = True) -> dict:
    """Runs the whole pipeline for `cfg`; reuses whatever is cached. Returns the metrics dict.

    Under `torchrun --nproc-per-node N` (torch backend), every rank trains its shard of the training set with averaged
    gradients; rank 0 generates, evaluates and writes everything, the other ranks return `{}`."""
    import yaml

    from . import distributed, plots
    from .dataset import PhiMLDataset, record_split, split_sims
    from .evaluation import summarize

    rank, world = distributed.init_from_environment() if cfg.training.backend == 'torch' else (0, 1)
    out = Path(output or cfg.output)
    splits = split_sims(range(cfg.data.n_sims), cfg.data.split, cfg.data.split_seed)
    if len(splits['test']) < max(cfg.evaluation.min_test_sims, 1):
        raise ValueError(
            f"The test split has {len(splits['test'])} sims (data.n_sims={cfg.data.n_sims}, data.split={list(cfg.data.split)}); "
            f"evaluation.min_test_sims={cfg.evaluation.min_test_sims}. Raise data.n_sims or the test fraction data.split[2]"
            + (
                " (the test split is empty)."
                if not splits['test']
                else ", or lower evaluation.min_test_sims knowingly."
            )
        )
    t_start = time.perf_counter()
    dm = cfg.data_manager()
    if rank == 0:  # under torchrun, rank 0 prepares and writes; every rank trains its shard
        out.mkdir(parents=True, exist_ok=True)
        (out / 'config.yaml').write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        dm.generate(cfg.data.n_sims, progress=progress)
        record_split(dm, splits, cfg.data.split, cfg.data.split_seed)
        generated = {'train': 0.0, 'val': 0.0, 'test': 0.0}  # fraction of windows from a model's predictions
        if cfg.training.mode == 'hybrid':
            generated['train'] = cfg.hybrid.alpha
        (out / 'splits.json').write_text(json.dumps({**splits, 'generated_fraction': generated}, indent=1))
    distributed.barrier()
    t_sim = time.perf_counter() - t_start

    train = PhiMLDataset(dm, splits['train'], cfg.dataset, shard=(rank, world))
    val = (
        PhiMLDataset(dm, splits['val'], cfg.dataset, stats=train.stats, shuffle=False, augment=False)
        if splits['val']
        else None
    )
    training = cfg.training if progress else dataclasses.replace(cfg.training, progress=False)
    t0 = time.perf_counter()
    trainer, physical, hybrid_log = _train(cfg, train, val, training, out)
    t_train = time.perf_counter() - t0
    history = trainer.history
    steps = sum(r['steps'] for r in history)
    distributed.barrier()
    if rank != 0:
        return {}
    if trainer is not physical:
        trainer.load_checkpoint(out / 'checkpoints' / 'best')

    test_sims = splits['test']
    metrics = evaluate_and_plot(cfg, trainer, test_sims, out)
    plots.plot_history(history, out / 'loss.png')
    summary = summarize(metrics)
    result = {
        'cache': str(dm.directory),
        'test_sims': test_sims,
        'rollout_steps': metrics['steps'],
        'summary': summary,
        'per_step': metrics['fields'],
        'seconds': {'simulation': t_sim, 'training': t_train, 'total': time.perf_counter() - t_start},
        'train_steps': steps,
        'train_steps_per_second': steps / t_train if t_train else None,
        'final_train_loss': history[-1]['train_loss'] if history else None,
        'final_val_loss': history[-1]['val_loss'] if history else None,
        'mode': cfg.training.mode,
        'versions': _versions(),
    }
    if physical is not None:
        result['parameters'] = _parameters(physical, dm.scenario)
        result['fit'] = {
            'converged': physical.history[-1]['converged'],
            'stop': physical.history[-1]['stop'],
            'initial_loss': physical.initial_loss,
            'final_loss': physical.history[-1]['train_loss'],
            'warnings': physical.fit_warnings(),
        }
        result['hybrid'] = hybrid_log
        plots.plot_parameters(
            physical.history, {k: v['simulated_with'] for k, v in result['parameters'].items()}, out / 'parameters.png'
        )
    (out / 'metrics.json').write_text(json.dumps(result, indent=1))
    _report(result, out)
    return result


def evaluate_and_plot(cfg: RunConfig, model, sims: list[int], out: Path) -> dict:
    """Rolls `model` (a `Trainer` or `PhysicalTrainer`) out on `sims` against truth and baselines; writes
    `evaluation.csv`, `errors.png` and `rollout_<field>.png` (and `.gif`) to `out`; returns the metrics."""
    import matplotlib.pyplot as plt

    from . import plots
    from .evaluation import evaluate, write_table

    metrics = evaluate(model.surrogate, model.train, sims, cfg.evaluation.rollout_steps)
    write_table(metrics, out / 'evaluation.csv')
    scenario = model.train.manager.scenario
    plots.plot_errors(metrics, out / 'errors.png', dt=scenario.dt)
    truth, pred = model.train.unpack(metrics['truth']), model.train.unpack(metrics['prediction'])
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
    """The model a finished run (output folder `run`, its `config.yaml` parsed as `cfg`) trained, ready to evaluate:
    the network's `checkpoint` (`'best'` or `'last'`), or the physical model's fit."""
    from .dataset import PhiMLDataset
    from .physical import PhysicalTrainer
    from .trainer import Trainer

    splits = json.loads((Path(run) / 'splits.json').read_text())
    train = PhiMLDataset(cfg.data_manager(), splits['train'], cfg.dataset)  # statistics and damping from training sims
    if cfg.training.mode == 'physical':
        return PhysicalTrainer(train, None, cfg.physical, cfg.training.backend).load_checkpoint(Path(run) / 'physical')
    training = dataclasses.replace(cfg.training, progress=False)
    return Trainer(train, None, cfg.model, training).load_checkpoint(Path(run) / 'checkpoints' / checkpoint)


def _train(cfg: RunConfig, train, val, training, out: Path):
    """Trains as `training.mode` says; returns `(the model evaluated, the physical trainer or None, hybrid log)`."""
    from .hybrid import HybridTrainer
    from .physical import PhysicalTrainer
    from .trainer import Trainer

    mode = training.mode
    physical = (
        PhysicalTrainer(train, val, cfg.physical, training.backend, out / 'physical') if mode != 'synthetic' else None
    )
    if mode == 'physical':
        physical.fit()
        return physical, physical, None
    trainer = Trainer(train, val, cfg.model, training, output=out)
    if mode == 'synthetic':
        trainer.fit()
        return trainer, None, None
    return trainer, physical, HybridTrainer(trainer, physical, cfg.hybrid, out / 'hybrid').fit()


def _parameters(physical, scenario) -> dict:
    """Per learnable parameter: first guess, fitted value, the value the data were simulated with, relative error
    of the fit, and its value after each epoch."""
    fitted, history = physical.params(), physical.history
    out = {}
    for name, value in fitted.items():
        true = float(getattr(scenario, name))
        out[name] = {
            'initial': float(physical.config.initial.get(name, true)),
            'fitted': value,
            'simulated_with': true,
            'relative_error': abs(value - true) / abs(true),
            'history': [r['params'][name] for r in history],
        }
    return out


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
