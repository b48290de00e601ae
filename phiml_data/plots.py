"""Matplotlib figures for the pipeline: fields, loss curves, rollout errors, truth vs prediction, animations.

Every figure function returns the `Figure`; pass `path` to also save it as PNG. Pass a sim's `metadata` (from
`DataManager.load_phiml_cache(i).metadata` or `scenario.metadata(i)`) to get physical axes (cell-centre coordinates
from the bounds) and times (`frame * dt`); without it, axes count cells and frames. Images put `x` horizontal and
`y` up; every row of images shares one colour scale with a colorbar. `describe(fig)` returns a few numbers computed
from each image a figure shows, for notebooks and tests to check what is plotted, not only that a plot exists.
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


def _scalar(t: Tensor) -> Tensor:
    """Vector fields as their magnitude, scalars unchanged."""
    return math.norm(t, "vector") if "vector" in t.shape else t


def _image(t: Tensor) -> np.ndarray:
    """`[y, x]` array of a 2D frame, for `imshow(origin='lower')`: x horizontal, y up."""
    return _scalar(t).numpy('y,x')


def _extent(metadata: dict | None, frame: Tensor) -> list[float]:
    """`[x0, x1, y0, y1]` of the domain (physical units with metadata, else cell counts)."""
    if metadata:
        return [*metadata['bounds']['x'], *metadata['bounds']['y']]
    return [0, frame.shape.get_size('x'), 0, frame.shape.get_size('y')]


def _time(metadata: dict | None, frame: int) -> str:
    return f't={frame * metadata["dt"]:.3g}' if metadata else f'frame {frame}'


def _frames(n_time: int, times) -> list[int]:
    return (
        list(times)
        if times is not None
        else sorted(set(np.linspace(0, n_time - 1, min(n_time, 4)).astype(int).tolist()))
    )


def _limits(images, symmetric=False) -> tuple[float, float]:
    """One colour scale for `images`: their range, or symmetric around 0."""
    hi = max(float(np.abs(i).max()) for i in images) if symmetric else max(float(i.max()) for i in images)
    return (-hi if symmetric else min(float(i.min()) for i in images)), hi


def _image_row(fig, axes, images, extent, titles, cmap='viridis', symmetric=False, label='', limits=None):
    """One row of images on a shared colour scale (`limits`, default the row's own), with one colorbar."""
    lo, hi = limits or _limits(images, symmetric)
    for ax, img, title in zip(axes, images, titles):
        mappable = ax.imshow(img, origin='lower', extent=extent, cmap=cmap, vmin=lo, vmax=hi, aspect='equal')
        ax.set_title(title, fontsize='small'), ax.set_xlabel('x'), ax.set_ylabel('y')
    fig.colorbar(mappable, ax=list(axes), shrink=0.8, label=label, extend='both' if limits else 'neither')


def plot_frames(values: Tensor, metadata: dict = None, times=None, title: str = '', path=None):
    """Frames of one field `Tensor (timeᵇ, xˢ, [yˢ], [vectorᶜ])`: 2D as images (vectors as magnitude), 1D as an x–t image."""
    if values.shape.spatial.rank == 1:
        return plot_xt({title or 'field': values}, metadata, path=path)
    times = _frames(values.shape.get_size('time'), times)
    fig, axes = _figure(1, len(times), figsize=(3.2 * len(times) + 1, 3.2), squeeze=False, layout='constrained')
    images = [_image(values.time[t]) for t in times]
    label = f'|{title}|' if 'vector' in values.shape else title
    _image_row(
        fig,
        axes[0],
        images,
        _extent(metadata, values.time[0]),
        [f'{title} {_time(metadata, t)}' for t in times],
        label=label,
    )
    return _save(fig, path)


def plot_xt(rows: dict[str, Tensor], metadata: dict = None, path=None, first_frame: int = 0):
    """Space–time images of 1D fields `{title: Tensor (timeᵇ, xˢ, [vectorᶜ])}`: x horizontal, time up.

    Vector fields show their `x` component (1D velocities are signed). Rows whose titles start with `difference`
    use a symmetric diverging scale; the others share one scale.
    """
    fig, axes = _figure(1, len(rows), figsize=(3.4 * len(rows) + 1, 3.4), squeeze=False, layout='constrained')
    arrays = {k: (v.vector['x'] if 'vector' in v.shape else v).numpy('time,x') for k, v in rows.items()}
    n_time, first = next(iter(arrays.values())).shape[0], next(iter(rows.values()))
    x0, x1 = metadata['bounds']['x'] if metadata else (0, first.shape.get_size('x'))
    t0, t1 = (
        ((first_frame - 0.5) * metadata['dt'], (first_frame + n_time - 0.5) * metadata['dt'])
        if metadata
        else (-0.5, n_time - 0.5)
    )
    plain = [k for k in arrays if not k.startswith('difference')]
    diff = [k for k in arrays if k.startswith('difference')]
    for group, symmetric in ((plain, False), (diff, True)):
        if group:
            axs = [axes[0, list(arrays).index(k)] for k in group]
            _image_row(
                fig,
                axs,
                [arrays[k] for k in group],
                [x0, x1, t0, t1],
                group,
                'RdBu_r' if symmetric else 'viridis',
                symmetric,
            )
            for ax in axs:
                ax.set_ylabel('t' if metadata else 'frame'), ax.set_aspect('auto')
    return _save(fig, path)


def plot_rollout(
    truth: dict, prediction: dict, field: str, metadata: dict = None, times=None, path=None, baseline: dict = None
):
    """Ground truth, prediction (and a baseline, e.g. the coarse solver) and their differences from the truth, for one
    field `Tensor (timeᵇ, xˢ, [yˢ], [vectorᶜ])`.

    2D fields: image rows truth / prediction / baseline on the scale of truth and prediction, then each one's
    difference from the truth on the scale of the prediction's (symmetric; vectors: the magnitude of the difference),
    at a few rollout steps, each row with its colour bar (so every row has the same width and the columns align); a
    baseline beyond those scales saturates (a diverging coarse solver would otherwise hide
    everything else). 1D fields: x–t
    images of the same. Rollout step `k` is frame `k` after the initial state. The title names the sim.

    Args:
        baseline: `{'coarse solver': {field: Tensor}}`-like: `{name: {field: values}}` shown as extra rows.
    """
    rows = {'truth': truth[field], 'prediction': prediction[field]}
    rows.update({name: values[field] for name, values in (baseline or {}).items()})
    diffs = {name: v - rows['truth'] for name, v in rows.items() if name != 'truth'}
    title = f"{field}, sim {metadata['sim_index']}" if metadata and 'sim_index' in metadata else field
    if rows['truth'].shape.spatial.rank == 1:
        xt = {f'{field} {k}': v for k, v in rows.items()}
        xt.update({f'difference ({k} - truth)': v for k, v in diffs.items()})
        fig = plot_xt(xt, metadata, first_frame=1)
        fig.suptitle(title)
        return _save(fig, path)
    times = _frames(rows['truth'].shape.get_size('time'), times)
    n = len(rows) + len(diffs)
    fig, axes = _figure(n, len(times), figsize=(3.2 * len(times) + 1, 3 * n), squeeze=False, layout='constrained')
    extent, steps = _extent(metadata, rows['truth'].time[0]), [_time(metadata, t + 1) for t in times]
    vector = 'vector' in rows['truth'].shape
    images = {k: [_image(v.time[t]) for t in times] for k, v in rows.items()}
    differences = {k: [_image(v.time[t]) for t in times] for k, v in diffs.items()}
    for groups, cmap, symmetric, label in (
        (images, 'viridis', False, f'|{field}|' if vector else field),
        (differences, 'magma' if vector else 'RdBu_r', not vector, '|difference|' if vector else 'difference'),
    ):
        scale_rows = ('truth', 'prediction') if groups is images else ('prediction',)  # baselines may saturate
        limits = _limits([i for name in scale_rows for i in groups[name]], symmetric)
        first = list(images).index(next(iter(groups))) if groups is images else len(images)
        for r, (name, row) in enumerate(groups.items()):
            prefix = name if groups is images else f'difference ({name} - truth)'
            _image_row(
                fig,
                axes[first + r],
                row,
                extent,
                [f'{prefix} {s}' for s in steps],
                cmap,
                symmetric,
                label,
                limits,
            )
    fig.suptitle(title)
    return _save(fig, path)


def animate_rollout(truth: dict, prediction: dict, field: str, metadata: dict = None, path=None, fps: int = 6):
    """A GIF of truth and prediction side by side over the rollout (2D fields), written with matplotlib's Pillow writer."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    values_t, values_p = truth[field], prediction[field]
    n = values_t.shape.get_size('time')
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.4), layout='constrained')
    frames = [(_image(values_t.time[t]), _image(values_p.time[t])) for t in range(n)]
    lo, hi = min(float(min(a.min(), b.min())) for a, b in frames), max(float(max(a.max(), b.max())) for a, b in frames)
    extent = _extent(metadata, values_t.time[0])
    shown = [ax.imshow(img, origin='lower', extent=extent, vmin=lo, vmax=hi) for ax, img in zip(axes, frames[0])]
    fig.colorbar(shown[0], ax=list(axes), shrink=0.8)

    def update(t):
        for ax, img, data, name in zip(axes, shown, frames[t], ('truth', 'prediction')):
            img.set_data(data)
            ax.set_title(f'{name} {_time(metadata, t + 1)}', fontsize='small')
        return shown

    animation = FuncAnimation(fig, update, frames=n, blit=False)
    if path:
        animation.save(str(path), writer=PillowWriter(fps=fps))
    plt.close(fig)
    return animation


def plot_history(history: list[dict], path=None):
    """Training and validation loss per epoch (log scale)."""
    fig, ax = _figure(figsize=(5, 3.5), layout='constrained')
    epochs = [r['epoch'] for r in history]
    ax.semilogy(epochs, [r['train_loss'] for r in history], 'o-', label='train')
    if history and history[0].get('val_loss') is not None:
        ax.semilogy(epochs, [r['val_loss'] for r in history], 's-', label='validation')
    ax.set_xlabel('epoch'), ax.set_ylabel('rollout MSE (normalised)'), ax.legend()
    return _save(fig, path)


def plot_parameters(history: list[dict], reference: dict = None, path=None, guess: dict = None):
    """The physical model's parameters after each epoch (`PhysicalTrainer.history`), log scale, from the first
    `guess` (epoch 0) where given, with the values the data were simulated with (`reference`, dashed) where known."""
    names = list(history[0]['params']) if history else list(guess or ())
    fig, axes = _figure(
        1, max(len(names), 1), figsize=(4.5 * max(len(names), 1), 3.5), squeeze=False, layout='constrained'
    )
    for ax, name in zip(axes[0], names):
        epochs, values = [r['epoch'] + 1 for r in history], [r['params'][name] for r in history]
        if guess and name in guess:
            epochs, values = [0, *epochs], [guess[name], *values]
            ax.semilogy([0], [guess[name]], 's', color='C1', label='first guess')
        ax.semilogy(epochs, values, 'o-', color='C0', label='fitted', zorder=1)
        if reference and name in reference:
            ax.axhline(reference[name], color='k', linestyle='--', label='simulated with')
        ax.set_xlabel('epoch'), ax.set_ylabel(name), ax.legend()
    return _save(fig, path)


ERROR_STYLES = {  # one colour and line style per curve, the same in every figure
    'model': ('C0', '-'),
    'zero': ('C7', ':'),
    'persistence': ('C1', '--'),
    'damped_persistence': ('C2', '-.'),
    'coarse_solver': ('C3', (0, (5, 1, 1, 1))),
    'fitted_solver': ('C4', (0, (3, 1, 1, 1, 1, 1))),
}


def plot_errors(metrics: dict, path=None, dt: float = None, log: bool = True):
    """Relative L2 error over the rollout, per field: the model and each baseline, each with its own colour and line
    style and a band spanning its min-max over the test sims.

    Args:
        metrics: `evaluation.evaluate(...)` results.
        dt: Time step: the x axis shows physical time `step * dt` (default: rollout steps).
        log: Logarithmic error axis (the first steps, where errors are small, stay visible).
    """
    fields = list(metrics['fields'])
    fig, axes = _figure(1, len(fields), figsize=(6 * len(fields), 4), squeeze=False, layout='constrained')
    for ax, field in zip(axes[0], fields):
        m = metrics['fields'][field]
        x = np.arange(1, len(m['model']) + 1) * (dt or 1)
        for name, (color, style) in ERROR_STYLES.items():
            if name not in m:
                continue
            ax.plot(
                x, m[name], color=color, linestyle=style, lw=2 if name == 'model' else 1.2, label=name.replace('_', ' ')
            )
            spread = m.get('spread', {}).get(name)
            if spread:
                ax.fill_between(x, spread['min'], spread['max'], color=color, alpha=0.15, lw=0)
        if log:
            ax.set_yscale('log')
        ax.set_title(field)
        ax.set_xlabel('time' if dt else 'rollout step')
        ax.set_ylabel('relative L2 error (bands: min-max over test sims)')
        ax.legend(fontsize='small')
    return _save(fig, path)


def plot_error_groups(groups: dict[str, list[dict]], path=None, baselines=('fitted_solver',), log: bool = True):
    """Relative L2 error over the rollout of groups of runs (e.g. one training mode over seeds), per field: each
    group's mean over its runs with a band spanning their min-max, and the `baselines` of the first run.

    Args:
        groups: `{name: [metrics.json of each run]}`; every run has `per_step[field]['model']`, a list over steps.
        baselines: Baselines drawn from the first run's `per_step[field]` (dashed, black shades).

    Example:
        >>> import json
        >>> runs = [json.loads(p.read_text()) for p in Path('outputs/seeds').glob('hyco-hybrid-seed*/metrics.json')]
        >>> plot_error_groups({'hybrid': runs}, 'docs/hyco_errors.png')  # doctest: +SKIP
    """
    first = next(iter(groups.values()))[0]['per_step']
    fig, axes = _figure(1, len(first), figsize=(6 * len(first), 4), squeeze=False, layout='constrained')
    for ax, field in zip(axes[0], first):
        for i, (name, runs) in enumerate(groups.items()):
            errors = np.array([r['per_step'][field]['model'] for r in runs])
            x = np.arange(1, errors.shape[1] + 1)
            ax.plot(x, errors.mean(0), color=f'C{i}', lw=2, label=f'{name} (mean of {len(runs)})')
            ax.fill_between(x, errors.min(0), errors.max(0), color=f'C{i}', alpha=0.2, lw=0)
        for j, name in enumerate(baselines):
            ax.plot(x, first[field][name], color=str(0.2 * j), ls='--', lw=1.2, label=name.replace('_', ' '))
        if log:
            ax.set_yscale('log')
        ax.set_title(field)
        ax.set_xlabel('rollout step')
        ax.set_ylabel('relative L2 error (bands: min-max over runs)')
        ax.legend(fontsize='small')
    return _save(fig, path)


def plot_vectors(values: Tensor, metadata: dict = None, title: str = '', ax=None, every: int = 1):
    """Quiver plot of a 2D vector field frame `Tensor (xˢ, yˢ, vectorᶜ=x,y)` on physical axes, coloured by magnitude."""
    if ax is None:
        _, ax = _figure(figsize=(4, 4), layout='constrained')
    u, v = values.vector['x'].numpy('x,y')[::every, ::every], values.vector['y'].numpy('x,y')[::every, ::every]
    x0, x1, y0, y1 = _extent(metadata, values)
    nx, ny = values.shape.get_size('x'), values.shape.get_size('y')
    x = x0 + (np.arange(nx) + 0.5) * (x1 - x0) / nx
    y = y0 + (np.arange(ny) + 0.5) * (y1 - y0) / ny
    gx, gy = np.meshgrid(x[::every], y[::every], indexing='ij')
    ax.quiver(
        gx,
        gy,
        u,
        v,
        np.hypot(u, v),
        cmap='viridis',
        angles='xy',
        scale_units='xy',
        scale=np.hypot(u, v).max() / (2 * (x[1] - x[0]) * every),
    )
    ax.set_title(title), ax.set_aspect('equal'), ax.set_xlabel('x'), ax.set_ylabel('y')
    return ax.figure


def describe(fig) -> list[dict]:
    """Numbers computed from the data each image of `fig` shows: title, shape, min, max, mean, and the values at the
    displayed lower-left and lower-right corners (a transposed or flipped image changes them)."""
    out = []
    for ax in fig.axes:
        for img in ax.images:
            a = np.asarray(img.get_array())
            out.append(
                {
                    'title': ax.get_title(),
                    'shape': a.shape,
                    'min': round(float(a.min()), 4),
                    'max': round(float(a.max()), 4),
                    'mean': round(float(a.mean()), 4),
                    'lower_left': round(float(a[0, 0]), 4),
                    'lower_right': round(float(a[0, -1]), 4),
                }
            )
    return out
