"""Evaluation: full-length rollouts on test simulations against ground truth and simple baselines, per step.

Step 5 of the pipeline (scenarios -> manager -> dataset -> trainer -> evaluation). Errors are relative L2 norms
per field and rollout step, computed in physical units.
"""

from __future__ import annotations

import csv
import importlib.util
import warnings
from pathlib import Path

import numpy as np
from phiml import math
from phiml.math import Tensor

from ._windows import last_frame
from .dataset import PhiMLDataset
from .physical import FitWarning
from .scenarios import step_values
from .surrogate import Surrogate


def relative_l2(pred: Tensor, truth: Tensor) -> Tensor:
    """`||pred - truth|| / ||truth||` over spatial and channel dims; keeps batch dims such as `(batchᵇ, timeᵇ)`.

    Example:
        >>> t = math.tensor([[3., 4.]], math.batch('b'), math.spatial('x'))
        >>> relative_l2(t * 0, t).numpy('b')
        array([1.], dtype=float32)
    """
    dims = truth.shape.non_batch
    diff = math.sqrt(math.sum((pred - truth) ** 2, dims))
    return diff / math.maximum(math.sqrt(math.sum(truth**2, dims)), 1e-12)


def rollout_dataset(train: PhiMLDataset, sims, steps: int = None) -> PhiMLDataset:
    """One window per sim in `sims`: the first `n_input` frames and the next `steps` frames (default: all)."""
    cfg = train.config
    n_frames = train.scenario.frames
    steps = steps or n_frames - cfg.n_input
    return train.variant(
        sims, noise=(0.0, 0), n_targets=steps, hop=n_frames, shuffle=False, augment=False, mode='memory', prefetch=0
    )


BASELINES = ('zero', 'persistence', 'damped_persistence', 'coarse_solver', 'fitted_solver')
"""The last two only where the truth was simulated on a finer grid; `fitted_solver` where the scenario also has
learnable parameters (the coarse solver with them fitted on the training windows: the best simple physics)."""


def _rollout_batch(ds: PhiMLDataset) -> tuple[Tensor, Tensor, dict]:
    """Truth `(batchᵇ, timeᵇ, ..., channelsᶜ)`, the last known frame `(batchᵇ, ..., channelsᶜ=targets)` (physical units)
    and the batch itself."""
    b = next(ds.iterate_batches(len(ds)))
    truth = ds.denormalize(b['targets'])
    last = last_frame(ds.denormalize(b['initial_state'])).channels[ds.target_channels]
    return truth, last, b


def damping(train: PhiMLDataset, steps: int, max_sims: int = 64) -> Tensor:
    """Per step and channel, the scalar `a` minimising `||a * last_frame - truth||` over the training sims (at most
    `max_sims` of them, evenly spaced: one scalar per step needs few, and they are held in memory).

    Returns:
        `Tensor (timeᵇ=steps, channelsᶜ=targets)`; vector fields share one factor over their components.
    """
    sims = train.sims
    ds = rollout_dataset(train, sims[:: -(-len(sims) // max_sims)], steps)
    truth, last, _ = _rollout_batch(ds)
    dims = truth.shape.only(('batch', *ds.layout.spatial))
    factors, frames = {}, ds.layout.unpack(last)
    for f, t in ds.layout.unpack(truth).items():
        frame = frames[f]
        both = dims & (t.shape.only('vector') if 'vector' in t.shape else math.EMPTY_SHAPE)
        factors[f] = math.sum(frame * t, both) / math.maximum(math.sum(frame**2, both), 1e-12)
    per_channel = [factors[c.rpartition('.')[0] or c] for c in ds.target_channels]
    return math.stack(per_channel, math.channel(channels=','.join(ds.target_channels)))


def coarse_solver(scenario, initial: dict[str, Tensor], steps: int, params: dict = None) -> dict[str, Tensor] | None:
    """The scenario's own solver on the cache's grid (`Scenario.coarse`) from the given initial frames, where the
    cached ground truth was simulated on a finer grid; else `None`.

    Args:
        initial: `{field: Tensor (batchᵇ, xˢ, [yˢ], [vectorᶜ])}` in physical units.
        params: Values of learnable parameters to use instead of the scenario's (`fitted_parameters`).

    Returns:
        `{field: Tensor (batchᵇ, timeᵇ=steps, xˢ, [yˢ], [vectorᶜ])}`.
    """
    coarse = scenario.coarse()
    if coarse is None:
        return None
    params = None if params is None else {k: math.tensor(v) for k, v in params.items()}
    metadata, state, frames = coarse.metadata(0), initial, {f: [] for f in initial}
    with np.errstate(all='ignore'):  # a diverging coarse solver is scored as an infinite error
        for _ in range(steps):
            state = step_values(coarse, state, metadata, params)
            for f in frames:
                frames[f].append(state[f])
    return {f: math.stack(v, math.batch('time')) for f, v in frames.items()}


def fitted_parameters(train: PhiMLDataset, windows: int = 32, steps: int = 3) -> dict[str, float] | None:
    """The scenario's learnable parameters fitted (L-BFGS-B, at most 15 iterations, from the scenario's own values)
    through its coarse solver to rollouts of at most `steps` steps from about `windows` training windows (evenly
    spaced starts), where the truth was simulated on a finer
    grid and the scenario has learnable parameters; else `None`: the effective coarse-grid values, which also absorb
    the coarse grid's error. Deterministic: the same numbers on every call."""
    scenario = train.scenario
    if scenario.coarse() is None or not scenario.learnable:
        return None
    key = (train.cache.key, tuple(train.sims), train.config, train.noise, windows, steps)
    if key not in _FITTED:  # the same numbers every call: fit once per training set and process
        _FITTED[key] = _fit_coarse(train, windows, steps)
    return dict(_FITTED[key])


_FITTED: dict = {}


def _fit_coarse(train: PhiMLDataset, windows: int, steps: int) -> dict[str, float] | None:
    scenario = train.scenario
    from .config import PhysicalConfig
    from .physical import PhysicalTrainer

    per_sim = max(1, windows // len(train.sims))
    n_targets = min(steps, train.layout.n_targets)
    hop = max(1, (scenario.frames - train.layout.n_input - n_targets) // per_sim)
    subset = train.variant(hop=hop, n_targets=n_targets, shuffle=False, augment=False, prefetch=0)
    backend = next((b for b in ('torch', 'jax') if importlib.util.find_spec(b)), None)
    if backend is None:  # no backend that differentiates: no fitted baseline
        return None
    fit = PhysicalTrainer(subset, config=PhysicalConfig(epochs=1, iterations=15, refine=1), backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FitWarning)  # a baseline: its fit is judged by its errors, reported per step
        fit.fit()
    return fit.params()


def evaluate(surrogate: Surrogate, train: PhiMLDataset, sims, steps: int = None) -> dict:
    """Rolls `surrogate` out on `sims` and compares it, step by step, with ground truth and three baselines.

    Baselines: `zero` (predict nothing), `persistence` (repeat the last known frame), `damped_persistence` (the
    last known frame times a scalar per step and field, fitted on the training sims: the best prediction that is a
    multiple of the initial state), and, where the ground truth was simulated on a finer grid, `coarse_solver` (the
    scenario's own solver on the cache's grid from the last known frame).

    Args:
        surrogate: What predicts: `Trainer.surrogate` (network on its base) or `PhysicalTrainer.surrogate` (the
            solver with fitted parameters).
        train: The training dataset: layout, normalisation statistics, the damping fit.
        sims: Test sim indices.
        steps: Rollout length (default: the rest of each trajectory).

    Returns:
        `{'steps', 'sims', 'fields': {field: {'model': [per-step mean rel. L2], 'zero': [...], 'persistence': [...],
        'damped_persistence': [...], 'spread': {name: {'std', 'min', 'max': [per step]}}}}, 'truth', 'prediction'}`,
        the last two `Tensor (batchᵇ=sims, timeᵇ, xˢ, [yˢ], channelsᶜ)` in physical units, `'rollouts'`: the coarse
        solvers' rollouts `{'coarse solver': {field: Tensor (batchᵇ, timeᵇ, xˢ, [yˢ], [vectorᶜ])}, 'fitted solver': ...}`
        where they exist, and `'fitted_parameters'`: those of the fitted solver (`fitted_parameters`), or `None`.
    """
    if not len(sims):
        raise ValueError("No test sims to evaluate on: the test split is empty")
    ds = rollout_dataset(train, sims, steps)
    truth, last, b = _rollout_batch(ds)
    with surrogate.eval_mode():
        pred = ds.denormalize(math.stop_gradient(surrogate.rollout(b['initial_state'], ds.layout.n_targets)))
    persistence = math.expand(last, truth.shape['time'])
    predictions = {
        'model': pred,
        'zero': persistence * 0,
        'persistence': persistence,
        'damped_persistence': persistence * damping(train, ds.layout.n_targets),
    }
    truth_f = ds.layout.unpack(truth)
    unpacked = {name: ds.layout.unpack(p) for name, p in predictions.items()}
    finite = lambda values: {f: math.where(math.is_finite(v), v, float('inf')) for f, v in values.items()}
    solver = coarse_solver(train.scenario, ds.layout.unpack(last), ds.layout.n_targets)
    if solver is not None:  # a solver that diverged (NaN, Inf) on the coarse grid has an infinite error there
        unpacked['coarse_solver'] = finite(solver)
    fitted = fitted_parameters(train)
    if fitted is not None:
        unpacked['fitted_solver'] = finite(
            coarse_solver(train.scenario, ds.layout.unpack(last), ds.layout.n_targets, fitted)
        )
    fields = {}
    for f in truth_f:
        errors = {
            name: relative_l2(p[f], truth_f[f]).numpy('batch,time') for name, p in unpacked.items()
        }  # [sims, steps]
        fields[f] = {name: e.mean(0).tolist() for name, e in errors.items()}
        fields[f]['spread'] = {
            name: {'std': _spread(e).tolist(), 'min': e.min(0).tolist(), 'max': e.max(0).tolist()}
            for name, e in errors.items()
        }
    coarse = {n.replace('_', ' '): unpacked[n] for n in ('coarse_solver', 'fitted_solver') if n in unpacked}
    return {
        'steps': ds.layout.n_targets,
        'sims': list(ds.sims),
        'fitted_parameters': fitted,
        'fields': fields,
        'truth': truth,
        'prediction': pred,
        'rollouts': coarse,
    }


def _spread(errors: np.ndarray) -> np.ndarray:
    """Standard deviation over sims of `errors [sims, steps]`; infinite where any sim's error is infinite."""
    finite = np.isfinite(errors).all(0)
    return np.where(finite, np.where(finite, errors, 0).std(0), np.inf)


def summarize(metrics: dict) -> dict:
    """Per field: the mean relative L2 over the rollout of the model and each baseline, the best baseline, the model's
    ratio to it (the headline) and to persistence, and whether the model beats the best baseline at every step."""
    out = {}
    for f, m in metrics['fields'].items():
        baselines = [n for n in BASELINES if n in m]
        means = {name: sum(m[name]) / len(m[name]) for name in ('model', *baselines)}
        best = min(baselines, key=means.get)
        out[f] = {
            **means,
            'best_baseline': best,
            'model_over_best_baseline': means['model'] / means[best] if means[best] else float('nan'),
            'model_over_persistence': means['model'] / means['persistence'] if means['persistence'] else float('nan'),
            'beats_best_baseline_every_step': all(
                a < min(m[n][k] for n in baselines) for k, a in enumerate(m['model'])
            ),
        }
    return out


def write_table(metrics: dict, path) -> Path:
    """Writes `step, field, model, model_std, zero, persistence, damped_persistence[, coarse_solver]` rows as CSV."""
    path = Path(path)
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        fields = metrics['fields']
        baselines = [n for n in BASELINES if all(n in m for m in fields.values())]
        w.writerow(['step', 'field', 'model', 'model_std', *baselines])
        for field, m in fields.items():
            for k in range(len(m['model'])):
                row = [m['model'][k], m['spread']['model']['std'][k], *(m[n][k] for n in baselines)]
                w.writerow([k + 1, field, *(f'{v:.6g}' for v in row)])
    return path
