"""Plots show what they claim: orientation (x right, y up), physical axes and times, shared scales, animations."""

import matplotlib
import numpy as np
import pytest
from phiml import math

from phiml_data import Burgers1D, Burgers2D, plots

matplotlib.use('Agg')


def ramp(nt=3, nx=8, ny=6):
    """`value = x index + 100 * frame`, constant along y."""
    x = (
        np.arange(nx, dtype=np.float32)[None, :, None]
        + 100 * np.arange(nt)[:, None, None]
        + 0 * np.arange(ny)[None, None, :]
    )
    return math.tensor(x, math.batch('time'), math.spatial('x,y'))


def test_images_put_x_right_y_up_with_physical_axes_and_times():
    scenario = Burgers2D(resolution=(8, 6), steps=2, length=4.0, dt=0.1)
    fig = plots.plot_frames(ramp(), scenario.metadata(0), title='u')
    first = plots.describe(fig)[0]
    assert first['shape'] == (6, 8) and (first['lower_left'], first['lower_right']) == (0, 7)  # transposed: (0, 0)
    assert fig.axes[0].images[0].get_extent() == [0.0, 4.0, 0.0, 4.0]
    assert [d['title'] for d in plots.describe(fig)] == ['u t=0', 'u t=0.1', 'u t=0.2']
    assert len({ax.images[0].get_clim() for ax in fig.axes if ax.images}) == 1  # one colour scale per row


def test_rollout_shows_truth_prediction_and_a_signed_difference():
    truth = ramp()
    fig = plots.plot_rollout({'u': truth}, {'u': truth + 1}, 'u')
    described = plots.describe(fig)
    differences = [d for d in described if d['title'].startswith('difference')]
    assert len(described) == 9 and all(d['min'] == d['max'] == 1 for d in differences)


def test_one_dimensional_fields_are_space_time_images():
    scenario = Burgers1D(resolution=16, steps=4)
    v = math.tensor(
        np.random.default_rng(0).normal(size=(5, 16, 1)).astype(np.float32),
        math.batch('time'),
        math.spatial('x'),
        math.channel(vector='x'),
    )
    fig = plots.plot_rollout({'velocity': v}, {'velocity': v * 0.5}, 'velocity', scenario.metadata(0))
    truth, _, diff = plots.describe(fig)
    assert truth['shape'] == (5, 16) and diff['title'].startswith('difference')
    assert fig.axes[2].images[0].get_clim()[0] == -fig.axes[2].images[0].get_clim()[1]  # symmetric scale
    assert fig.axes[0].images[0].get_extent()[:2] == [0.0, pytest.approx(scenario.length)]


def test_animation_writes_one_gif_frame_per_rollout_step(tmp_path):
    from PIL import Image

    truth = math.tensor(
        np.random.default_rng(1).normal(size=(4, 8, 8, 2)).astype(np.float32),
        math.batch('time'),
        math.spatial('x,y'),
        math.channel(vector='x,y'),
    )
    plots.animate_rollout({'v': truth}, {'v': truth}, 'v', path=tmp_path / 'r.gif')
    assert Image.open(tmp_path / 'r.gif').n_frames == 4


def test_error_plot_gives_every_curve_its_own_style_a_band_and_a_log_time_axis():
    import matplotlib

    matplotlib.use('Agg')
    from phiml_data import plots

    names = ('model', 'zero', 'persistence', 'damped_persistence', 'coarse_solver')
    per_step = {n: [0.1 * (i + 1), 0.2 * (i + 1), 0.3] for i, n in enumerate(names)}
    per_step['spread'] = {n: {'min': [0.05] * 3, 'max': [1.0] * 3, 'std': [0.1] * 3} for n in names}
    fig = plots.plot_errors({'fields': {'velocity': per_step}}, dt=0.5)
    ax = fig.axes[0]
    styles = {(line.get_color(), str(line.get_linestyle())) for line in ax.lines}
    assert len(ax.lines) == len(styles) == 5 and len(ax.collections) == 5  # one band per curve
    assert ax.get_yscale() == 'log' and ax.get_xlabel() == 'time' and list(ax.lines[0].get_xdata()) == [0.5, 1.0, 1.5]


def test_error_groups_draw_each_groups_mean_and_run_range_with_the_fitted_solver(tmp_path):
    run = lambda *model: {'per_step': {'u': {'model': list(model), 'fitted_solver': [0.5, 0.5, 0.5]}}}
    groups = {'alone': [run(0.1, 0.2, 0.4), run(0.3, 0.4, 0.8)], 'hybrid': [run(0.1, 0.1, 0.2)]}
    fig = plots.plot_error_groups(groups, tmp_path / 'groups.png')
    ax = fig.axes[0]
    curves = [line.get_ydata() for line in ax.lines]  # the groups' means, then the fitted solver
    np.testing.assert_allclose(np.array(curves), [[0.2, 0.3, 0.6], [0.1, 0.1, 0.2], [0.5, 0.5, 0.5]])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert min(band) == 0.1 and max(band) == 0.8 and len(ax.collections) == 2
    assert (tmp_path / 'groups.png').stat().st_size > 0


def test_rollout_with_a_coarse_solver_row_on_shared_scales_titled_with_the_sim():
    truth = ramp()
    fig = plots.plot_rollout(
        {'u': truth},
        {'u': truth + 1},
        'u',
        {**Burgers2D(resolution=(8, 6)).metadata(3)},
        baseline={'coarse solver': {'u': truth - 2}},
    )
    described = plots.describe(fig)
    titles = [d['title'] for d in described]
    assert (
        len(described) == 15
        and titles[6].startswith('coarse solver')
        and titles[12].startswith('difference (coarse solver - truth)')
    )
    assert fig._suptitle.get_text() == 'u, sim 3'
    rows = [fig.axes[i].images[0].get_clim() for i in (0, 3, 6)]  # truth, prediction, coarse solver: one scale
    diffs = [fig.axes[i].images[0].get_clim() for i in (9, 12)]  # both differences: one symmetric scale
    assert len(set(rows)) == 1 and len(set(diffs)) == 1 and diffs[0] == (-1, 1)  # the model's scale; baselines saturate


def test_a_2d_rollout_has_one_colour_bar_per_row_and_aligned_columns():
    """Issue #31.7: the columns were misaligned, with one colour bar per group of rows."""
    truth = ramp()
    fig = plots.plot_rollout({'u': truth}, {'u': truth + 1}, 'u', baseline={'coarse solver': {'u': truth * 2}})
    fig.canvas.draw()
    images = [ax for ax in fig.axes if ax.images and ax.get_label() != '<colorbar>']
    bars = [ax for ax in fig.axes if ax.get_label() == '<colorbar>']
    rows = sorted({round(ax.get_position().y0, 3) for ax in images})
    assert len(bars) == len(rows) == 5  # truth, prediction, coarse solver, and two differences
    columns = {}
    for ax in images:
        columns.setdefault(round(ax.get_position().x0, 2), []).append(ax.get_position().width)
    assert len(columns) == len(images) // len(rows)  # every row's images sit in the same columns
