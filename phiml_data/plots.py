"""Matplotlib figures for the pipeline: fields, loss curves, rollout errors, truth vs prediction.

Every function returns the `Figure`; pass `path` to also save it as PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from phiml import math
from phiml.math import Tensor


def _figure(*args, **kwargs):
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def _save(fig, path):
    if path:
        fig.savefig(Path(path), dpi=100, bbox_inches='tight')
    return fig


def _image(t: Tensor) -> np.ndarray:
    """2D array to show for a field frame: magnitude of vector fields, the value of scalars; 1D as a row."""
    if 'vector' in t.shape:
        t = math.vec_length(t)
    names = t.shape.spatial.names
    array = t.numpy(names)
    return array.T if array.ndim == 2 else array[None, :]  # x horizontal, y up (with origin='lower'); 1D: one row


def plot_frames(values: Tensor, times=None, title: str = '', path=None):
    """A row of frames of one field `Tensor (timeᵇ, xˢ, [yˢ], [vectorᶜ])`, vector fields as magnitude."""
    n_time = values.shape.get_size('time')
    times = (
        list(times)
        if times is not None
        else sorted(set(np.linspace(0, n_time - 1, min(n_time, 4)).astype(int).tolist()))
    )
    fig, axes = _figure(1, len(times), figsize=(3 * len(times), 3), squeeze=False)
    for ax, t in zip(axes[0], times):
        image = _image(values.time[t])
        if values.shape.spatial.rank == 1:
            ax.plot(image[0])
        else:
            ax.imshow(image, origin='lower', cmap='viridis', aspect='auto')
            ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f'{title} t={t}')
    fig.tight_layout()
    return _save(fig, path)


def plot_history(history: list[dict], path=None):
    """Training and validation loss per epoch (log scale)."""
    fig, ax = _figure(figsize=(5, 3.5))
    epochs = [r['epoch'] for r in history]
    ax.semilogy(epochs, [r['train_loss'] for r in history], 'o-', label='train')
    if history and history[0].get('val_loss') is not None:
        ax.semilogy(epochs, [r['val_loss'] for r in history], 's-', label='validation')
    ax.set_xlabel('epoch'), ax.set_ylabel('rollout MSE (normalised)'), ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_errors(metrics: dict, path=None):
    """Relative L2 error over rollout steps, model vs persistence, one line pair per field."""
    fig, ax = _figure(figsize=(5, 3.5))
    for field, m in metrics['fields'].items():
        steps = np.arange(1, len(m['model']) + 1)
        (line,) = ax.plot(steps, m['model'], label=f'{field}: model')
        ax.plot(steps, m['persistence'], '--', color=line.get_color(), label=f'{field}: persistence')
    ax.set_xlabel('rollout step'), ax.set_ylabel('relative L2 error'), ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_rollout(truth: dict, prediction: dict, field: str, times=None, path=None):
    """Ground truth vs prediction of one field `Tensor (timeᵇ, xˢ, [yˢ], [vectorᶜ])` at a few rollout steps.

    2D fields: truth (top row) and prediction (bottom row) as images on a shared colour scale.
    1D fields: one panel per step with both curves (vector components as separate lines).
    """
    values_t, values_p = truth[field], prediction[field]
    n_time = values_t.shape.get_size('time')
    times = (
        list(times)
        if times is not None
        else sorted(set(np.linspace(0, n_time - 1, min(n_time, 4)).astype(int).tolist()))
    )
    one_d = values_t.shape.spatial.rank == 1
    fig, axes = _figure(1 if one_d else 2, len(times), figsize=(3 * len(times), 3 if one_d else 6), squeeze=False)
    for j, t in enumerate(times):
        if one_d:
            ax = axes[0, j]
            for values, style, name in ((values_t, '-', 'truth'), (values_p, '--', 'prediction')):
                frame = values.time[t]
                for c in frame.shape.get_item_names('vector') if 'vector' in frame.shape else [None]:
                    ax.plot((frame.vector[c] if c else frame).numpy('x'), style, label=f"{name}{'.' + c if c else ''}")
            ax.set_title(f'step {t + 1}'), ax.set_xlabel('x')
            axes[0, 0].legend(fontsize='small')
            continue
        a, b = _image(values_t.time[t]), _image(values_p.time[t])
        lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
        for i, (img, name) in enumerate(((a, 'truth'), (b, 'prediction'))):
            axes[i, j].imshow(img, origin='lower', cmap='viridis', vmin=lo, vmax=hi, aspect='auto')
            axes[i, j].set_title(f'{name} step {t + 1}')
            axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
    fig.suptitle(field)
    fig.tight_layout()
    return _save(fig, path)


def plot_vectors(values: Tensor, title: str = '', ax=None):
    """Quiver plot of a 2D vector field frame `Tensor (xˢ, yˢ, vectorᶜ=x,y)`."""
    if ax is None:
        fig, ax = _figure(figsize=(3.5, 3.5))
    u, v = values.vector['x'].numpy('x,y'), values.vector['y'].numpy('x,y')
    x, y = np.meshgrid(np.arange(u.shape[0]), np.arange(u.shape[1]), indexing='ij')
    ax.quiver(x, y, u, v, np.hypot(u, v), cmap='viridis')
    ax.set_title(title), ax.set_aspect('equal'), ax.set_xticks([]), ax.set_yticks([])
    return ax.figure
