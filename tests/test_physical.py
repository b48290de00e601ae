"""The physical trainer (`phiml_data.physical`): a scenario's learnable parameters fitted through its PhiML solver."""

import pytest

from phiml_data import Burgers1D, DataManager, PhiMLDataset
from phiml_data.physical import FitError, FitWarning, PhysicalConfig, PhysicalTrainer

pytest.importorskip('torch')


@pytest.fixture(scope='module')
def windows(tmp_path_factory):
    """Burgers data made with viscosity 0.05 by the same solver the physical model runs (spectral, refine 1)."""
    dm = DataManager(
        tmp_path_factory.mktemp('physical'), Burgers1D(resolution=32, steps=10, scheme='spectral', viscosity=0.05)
    )
    dm.generate(4, progress=False)
    train = PhiMLDataset(dm, [0, 1, 2], n_targets=3, batch_size=8)
    return train, PhiMLDataset(dm, [3], n_targets=3, stats=train.stats, shuffle=False)


def test_a_known_viscosity_is_recovered_from_a_guess_off_by_5x(windows):
    train, val = windows
    fit = PhysicalTrainer(train, val, PhysicalConfig({'viscosity': 0.25}, epochs=2))
    history = fit.fit()
    assert fit.params()['viscosity'] == pytest.approx(0.05, rel=1e-3)
    assert history[-1]['val_loss'] < 1e-6 < history[0]['params']['viscosity']
    assert sorted(history[0]) == [
        'converged',
        'epoch',
        'gradient',
        'params',
        'seconds',
        'steps',
        'stop',
        'train_loss',
        'val_loss',
    ]


def test_every_window_weighs_the_same_however_the_epoch_is_batched(windows):
    """The fit's objective is the mean over the epoch's windows: a last, partial batch (24 windows in batches of 7
    here) weighs its windows' share, not a whole batch's, so the objective does not change with the window order."""
    from phiml import math

    from phiml_data.physical import _Objective

    train, _ = windows
    fit = PhysicalTrainer(train, config=PhysicalConfig({'viscosity': 0.07}))
    by_window = [train.variant(batch_size=n) for n in (7, 5, len(train))]
    values = [
        _Objective(fit, list(d.iterate_batches(epoch=e))).value_and_gradient(fit.theta)
        for d in by_window
        for e in (0, 1)
    ]
    assert len(train) % 7 and len(train) % 5
    for loss, grad in values[1:]:
        assert loss == pytest.approx(values[0][0], rel=1e-5)
        assert float(grad.param[0]) == pytest.approx(float(values[0][1].param[0]), rel=1e-4)
    assert float(math.abs(values[0][1].param[0])) > 0


def test_adam_moves_towards_it_and_a_checkpoint_resumes_exactly(windows, tmp_path):
    train, _ = windows
    config = PhysicalConfig({'viscosity': 0.25}, optimizer='adam', learning_rate=0.1, epochs=4)
    whole = PhysicalTrainer(train, config=config)
    whole.fit()
    assert 0.05 < whole.params()['viscosity'] < 0.15
    first = PhysicalTrainer(train, config=config, output=tmp_path)
    first.fit(2)
    resumed = PhysicalTrainer(train, config=config).load_checkpoint(tmp_path / 'checkpoints' / 'last')
    resumed.fit()
    same = lambda h: [(r['epoch'], r['params'], r['train_loss']) for r in h]
    assert resumed.params() == whole.params() and same(resumed.history) == same(whole.history)


def test_parameters_the_scenario_cannot_learn_are_refused(windows):
    with pytest.raises(
        ValueError, match=r"physical.initial: scenario 'burgers1d' can learn \['viscosity'\]; got \['buoyancy'\]"
    ):
        PhysicalTrainer(windows[0], config=PhysicalConfig({'buoyancy': 1.0}))


def test_a_fit_started_at_the_exact_optimum_ends_converged(windows):
    """The second epoch of any converged fit starts here; SciPy's line search may end 'ABNORMAL' (machine-dependent)."""
    fit = PhysicalTrainer(windows[0], config=PhysicalConfig({'viscosity': 0.05}, epochs=2))
    history = fit.fit()
    assert fit.params()['viscosity'] == pytest.approx(0.05, rel=1e-5)
    assert all(r['converged'] for r in history) and fit.fit_warnings() == []


def test_a_line_search_that_ends_abnormal_at_the_optimum_is_convergence(windows, monkeypatch):
    """Drives SciPy's "ABNORMAL" line-search end on purpose (it happens at an exact optimum, differently on different
    machines): the point reached is judged by its gradient, not by the message."""
    import math
    import types

    import scipy.optimize

    def abnormal(fun, x0, jac, method, options):
        x = [math.log(0.05)]  # the optimum, reached
        return types.SimpleNamespace(x=x, message='ABNORMAL: ', nit=3, status=2, success=False)

    monkeypatch.setattr(scipy.optimize, 'minimize', abnormal)
    fit = PhysicalTrainer(windows[0], config=PhysicalConfig({'viscosity': 0.25}, epochs=1))
    history = fit.fit()
    assert fit.params()['viscosity'] == pytest.approx(0.05, rel=1e-5) and fit.fit_warnings() == []
    assert history[-1]['converged'] and history[-1]['stop'] == 'L-BFGS-B: ABNORMAL:  (3 iterations)'


def test_a_diverging_fit_names_parameter_epoch_guess_and_last_value(windows):
    fit = PhysicalTrainer(windows[0], config=PhysicalConfig({'viscosity': 1e300}, epochs=1))
    with pytest.raises(
        FitError, match=r"diverged in epoch 0 \(at the first guess\): viscosity = inf \(first guess 1e\+300\)"
    ):
        fit.fit()


def test_a_fit_that_does_not_reduce_its_loss_says_so(windows):
    fit = PhysicalTrainer(windows[0], config=PhysicalConfig({'viscosity': 1e6}, epochs=1))
    with pytest.warns(FitWarning, match=r"the loss did not fall \(0.99\d+ at the first guess viscosity 1e\+06"):
        fit.fit()
    assert len(fit.fit_warnings()) == 1


@pytest.mark.parametrize('value', [float('inf'), float('nan'), 0, -1, True])
def test_non_finite_or_non_positive_guesses_are_refused_by_the_config(value):
    with pytest.raises(ValueError, match='initial must map parameter names to finite numbers > 0'):
        PhysicalConfig({'viscosity': value})
