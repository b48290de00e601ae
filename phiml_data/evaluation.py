"""Evaluation: full-length rollouts on test simulations against ground truth and the persistence baseline.

Step 5 of the pipeline (scenarios -> manager -> dataset -> trainer -> evaluation). Errors are relative L2 norms
per field and rollout step, computed in physical units.
"""

from __future__ import annotations

import csv
from pathlib import Path

from phiml import math
from phiml.math import Tensor

from .dataset import PhiMLDataset, last_frame


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
    n_frames = train.manager.scenario.frames
    steps = steps or n_frames - cfg.n_input
    return PhiMLDataset(
        train.manager,
        sims,
        cfg,
        stats=train.stats,
        n_targets=steps,
        hop=n_frames,
        shuffle=False,
        augment=False,
        mode='memory',
        prefetch=0,
    )


def evaluate(trainer, sims, steps: int = None) -> dict:
    """Rolls the trained model out on `sims` and compares it with ground truth and persistence.

    Args:
        trainer: A trained `Trainer` (its training dataset supplies layout and statistics).
        sims: Test sim indices.
        steps: Rollout length (default: the rest of each trajectory).

    Returns:
        `{'steps': int, 'fields': {field: {'model': [per-step mean rel. L2], 'persistence': [...]}},
          'truth': Tensor, 'prediction': Tensor}`, the last two `(batchᵇ=sims, timeᵇ, xˢ, [yˢ], channelsᶜ)` in
          physical units.
    """
    ds = rollout_dataset(trainer.train, sims, steps)
    b = next(ds.iterate_batches(len(ds)))
    with trainer.surrogate.eval_mode():
        pred = math.stop_gradient(trainer.rollout(b['initial_state'], ds.layout.n_targets))
    truth, pred = ds.denormalize(b['targets']), ds.denormalize(pred)
    last = last_frame(ds.denormalize(b['initial_state']))
    persistence = math.expand(last.channels[ds.target_channels], truth.shape['time'])
    fields = {}
    truth_f, pred_f, pers_f = ds.unpack(truth), ds.unpack(pred), ds.unpack(persistence)
    for f in truth_f:
        fields[f] = {
            name: math.mean(relative_l2(p[f], truth_f[f]), 'batch').numpy('time').tolist()
            for name, p in (('model', pred_f), ('persistence', pers_f))
        }
    return {'steps': ds.layout.n_targets, 'sims': list(ds.sims), 'fields': fields, 'truth': truth, 'prediction': pred}


def summarize(metrics: dict) -> dict:
    """Mean relative L2 over the rollout per field, for model and persistence, and their ratio."""
    out = {}
    for f, m in metrics['fields'].items():
        model, pers = sum(m['model']) / len(m['model']), sum(m['persistence']) / len(m['persistence'])
        out[f] = {'model': model, 'persistence': pers, 'model_over_persistence': model / pers if pers else float('nan')}
    return out


def write_table(metrics: dict, path) -> Path:
    """Writes `step, field, model_rel_l2, persistence_rel_l2` rows as CSV."""
    path = Path(path)
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['step', 'field', 'model_rel_l2', 'persistence_rel_l2'])
        for field, m in metrics['fields'].items():
            for step, (a, b) in enumerate(zip(m['model'], m['persistence']), start=1):
                w.writerow([step, field, f'{a:.6g}', f'{b:.6g}'])
    return path
