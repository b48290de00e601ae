"""Trainer, evaluation, configs and the legacy comparison."""

import copy
import re
import sys

import numpy as np
import pytest
import torch
from phiml import math, nn
from phiml.math import Tensor

from conftest import ROOT, arrays
from phiml_data import ConfigError, PhiMLDataset, load_run_config
from phiml_data.config import parse_run_config
from phiml_data.evaluation import evaluate, relative_l2, summarize
from phiml_data.trainer import ModelConfig, TrainConfig, Trainer

sys.path.insert(0, str(ROOT / 'benchmarks'))
from legacy_pipeline import legacy_loader, legacy_rollout_loss, write_legacy_caches  # noqa: E402

SMALL = ModelConfig(architecture='conv_net', filters=8, layers=2)


@pytest.fixture(scope='module')
def datasets(burgers_dm):
    train = PhiMLDataset(burgers_dm, [0, 1, 2, 3, 4, 5], n_targets=2, batch_size=16)
    val = PhiMLDataset(burgers_dm, [6], n_targets=2, stats=train.stats, shuffle=False)
    return train, val


def test_torch_loss_decreases_and_batches_go_in_as_phiml_tensors(datasets, tmp_path, monkeypatch):
    train, val = datasets
    trainer = Trainer(
        train, val, ModelConfig(filters=8), TrainConfig(epochs=4, learning_rate=3e-3, progress=False), output=tmp_path
    )
    seen = []
    loss = trainer.loss
    monkeypatch.setattr(trainer, 'loss', lambda x, y: seen.append((type(x), type(y))) or loss(x, y))
    history = trainer.fit()
    assert all(issubclass(a, Tensor) and issubclass(b, Tensor) for a, b in seen)
    assert history[-1]['train_loss'] < 0.8 * history[0]['train_loss']
    assert history[-1]['val_loss'] < history[0]['val_loss']
    assert {'epoch', 'train_loss', 'val_loss', 'learning_rate', 'seconds', 'steps'} <= set(history[0])
    assert (tmp_path / 'history.json').exists() and (tmp_path / 'checkpoints' / 'best' / 'state.json').exists()


def test_the_best_checkpoint_is_evaluated_while_the_record_keeps_every_epoch(datasets, tmp_path):
    import shutil

    train, val = datasets
    config = TrainConfig(epochs=3, learning_rate=3e-3, progress=False)
    trainer = Trainer(train, val, SMALL, config, output=tmp_path)
    trainer.fit(1)
    shutil.copytree(tmp_path / 'checkpoints' / 'best', tmp_path / 'first')
    trainer.fit(3)
    shutil.rmtree(tmp_path / 'checkpoints' / 'best')
    (tmp_path / 'first').rename(tmp_path / 'checkpoints' / 'best')  # the best epoch is the first, whatever the losses
    first = Trainer(train, None, SMALL, config).load_checkpoint(tmp_path / 'checkpoints' / 'best')
    batch = next(iter(val.iterate_batches()))['initial_state']
    predict = lambda t: t.surrogate.rollout(math.convert(batch, t.backend), 1).numpy('batch,x,y,channels,time')
    before = predict(trainer)
    trainer.restore_best()
    assert np.array_equal(predict(trainer), predict(first)) and not np.array_equal(predict(trainer), before)
    assert trainer.epoch == 3 and [r['epoch'] for r in trainer.history] == [0, 1, 2]  # steps, losses, loss.png


@pytest.mark.slow
def test_jax_loss_keeps_falling_despite_the_phiml_adam_bug(datasets):
    train, _ = datasets
    small = train.variant(sims=[0, 1], n_targets=1, batch_size=11)
    trainer = Trainer(
        small,
        None,
        ModelConfig('conv_net', filters=8, layers=1),
        TrainConfig(backend='jax', epochs=3, learning_rate=3e-3, progress=False),
    )
    history = trainer.fit()
    losses = [r['train_loss'] for r in history]
    assert losses[2] < losses[1] < losses[0], losses
    assert trainer.optimizer._step_i == sum(r['steps'] for r in history)  # Adam's step counter advances
    from phiml.backend import default_backend

    assert default_backend().name != 'jax'  # the jax trainer left the caller's default backend alone


def test_resume_from_checkpoint_matches_an_uninterrupted_run(datasets, tmp_path):
    train, val = datasets
    cfg = TrainConfig(epochs=3, progress=False, lr_decay=0.5)
    full = Trainer(train, val, SMALL, cfg).fit()
    first = Trainer(train, val, SMALL, TrainConfig(epochs=1, progress=False, lr_decay=0.5), output=tmp_path)
    first.fit()
    resumed = Trainer(train, val, SMALL, cfg).load_checkpoint(tmp_path / 'checkpoints' / 'last')
    history = resumed.fit()
    assert len(history) == len(full) == 3
    for a, b in zip(full, history):
        assert a['train_loss'] == pytest.approx(b['train_loss'], rel=1e-6) and a['val_loss'] == pytest.approx(
            b['val_loss'], rel=1e-6
        )
        assert a['learning_rate'] == b['learning_rate']


def test_same_seed_same_losses(datasets):
    train, _ = datasets
    run = lambda: [
        r['train_loss'] for r in Trainer(train, None, SMALL, TrainConfig(epochs=2, progress=False, seed=4)).fit()
    ]
    assert run() == run()


def test_relative_loss_weighs_every_window_and_channel_equally(datasets):
    train, _ = datasets
    trainer = Trainer(train, None, SMALL, TrainConfig(epochs=2, loss='relative', progress=False))
    b = next(train.iterate_batches(4))
    with trainer.backend:
        loss = float(math.stop_gradient(trainer.loss(b['initial_state'], b['targets'])))
        pred = math.stop_gradient(trainer.rollout(b['initial_state'], 2)).numpy('batch,time,x,y,channels')
    truth = b['targets'].numpy('batch,time,x,y,channels').astype(np.float64)
    by_hand = (((pred - truth) ** 2).mean((2, 3)) / ((truth**2).mean((2, 3)) + 1e-6)).mean()
    assert loss == pytest.approx(by_hand, rel=1e-4)
    history = trainer.fit()
    assert history[-1]['train_loss'] < history[0]['train_loss']
    with pytest.raises(ValueError, match=r"TrainConfig.loss: unknown loss 'l1'; valid: \[.*'mse'"):
        TrainConfig(loss='l1')


def test_over_base_loss_compares_each_window_with_the_base_alone(datasets):
    train, _ = datasets
    trainer = Trainer(train, None, SMALL, TrainConfig(loss='over_base', progress=False))
    b = next(train.iterate_batches(4))
    with trainer.backend:
        loss = float(math.stop_gradient(trainer.loss(b['initial_state'], b['targets'])))
        pred = math.stop_gradient(trainer.rollout(b['initial_state'], 2)).numpy('batch,time,x,y,channels')
    truth = b['targets'].numpy('batch,time,x,y,channels').astype(np.float64)
    persistence = b['initial_state'].numpy('batch,x,y,channels')[:, None]  # the base of ModelConfig's default
    reference = ((persistence - truth) ** 2).mean((2, 3, 4)) + 1e-4 * (truth**2).mean((2, 3, 4))
    assert loss == pytest.approx((((pred - truth) ** 2).mean((2, 3, 4)) / reference).mean(), rel=1e-4)


def test_output_scale_is_the_rms_one_step_error_of_the_base(datasets):
    import itertools

    from phiml_data.surrogate import correction_scale

    train, _ = datasets
    scale = correction_scale(train, max_batches=2)
    batches = list(itertools.islice(train.iterate_batches(epoch=0, prefetch=0), 2))
    steps = [(b['targets'].time[0] - b['initial_state']).numpy('batch,x,y,channels') for b in batches]
    np.testing.assert_allclose(
        scale.numpy('channels'), np.sqrt((np.concatenate(steps) ** 2).mean((0, 1, 2))), rtol=1e-5
    )
    trainer = Trainer(train, None, ModelConfig('conv_net', 8, 8, 2, scale_output='global'), TrainConfig(progress=False))
    b = batches[0]
    with trainer.backend:  # the network's output, times the scale, is added to the last frame
        delta = math.native_call(trainer.net, b['initial_state'])
        delta = math.rename_dims(delta, delta.shape.channel, math.channel(channels=','.join(train.target_channels)))
        expected = b['initial_state'] + delta * correction_scale(train)
        np.testing.assert_allclose(
            math.stop_gradient(trainer.step(b['initial_state'])).numpy('batch,x,y,channels'),
            math.stop_gradient(expected).numpy('batch,x,y,channels'),
            rtol=1e-5,
            atol=1e-7,
        )


def test_relative_l2_by_hand():
    truth = math.tensor([[3.0, 4.0], [1.0, 0.0]], math.batch('b'), math.spatial('x'))
    pred = math.tensor([[3.0, 0.0], [0.0, 0.0]], math.batch('b'), math.spatial('x'))
    np.testing.assert_allclose(relative_l2(pred, truth).numpy('b'), [4 / 5, 1.0])


def test_evaluation_against_hand_computed_persistence(datasets, burgers_dm, monkeypatch):
    train, _ = datasets
    trainer = Trainer(train, None, SMALL, TrainConfig(epochs=0, progress=False))
    metrics = evaluate(trainer.surrogate, trainer.train, [6, 7], steps=4)
    v = [arrays(burgers_dm.load_phiml_cache(s)['velocity']).astype(np.float64) for s in (6, 7)]
    by_hand = [np.mean([np.linalg.norm(x[0] - x[k]) / np.linalg.norm(x[k]) for x in v]) for k in range(1, 5)]
    np.testing.assert_allclose(metrics['fields']['velocity']['persistence'], by_hand, rtol=1e-4)
    np.testing.assert_allclose(metrics['fields']['velocity']['zero'], 1, rtol=1e-6)
    fit = [arrays(burgers_dm.load_phiml_cache(s)['velocity']).astype(np.float64) for s in train.sims]
    damping = [sum((x[0] * x[k]).sum() for x in fit) / sum((x[0] ** 2).sum() for x in fit) for k in range(1, 5)]
    damped = [
        np.mean([np.linalg.norm(a * x[0] - x[k]) / np.linalg.norm(x[k]) for x in v])
        for a, k in zip(damping, range(1, 5))
    ]
    np.testing.assert_allclose(metrics['fields']['velocity']['damped_persistence'], damped, rtol=1e-4)
    spread = metrics['fields']['velocity']['spread']['persistence']
    assert all(lo <= m <= hi for lo, m, hi in zip(spread['min'], by_hand, spread['max']))
    summary = summarize(metrics)['velocity']
    assert summary['best_baseline'] in ('zero', 'persistence', 'damped_persistence')
    assert summary['model_over_best_baseline'] == summary['model'] / summary[summary['best_baseline']]
    # a model that returns the ground truth scores zero
    truth = math.tensor(
        np.stack([x[1:5] for x in v]).astype(np.float32), metrics['truth'].shape
    )  # (batch, time, x, y, channels)
    monkeypatch.setattr(
        trainer.surrogate,
        'rollout',
        lambda init, steps: train.normalized(truth),
    )
    perfect = evaluate(trainer.surrogate, trainer.train, [6, 7], steps=4)
    np.testing.assert_allclose(perfect['fields']['velocity']['model'], 0, atol=1e-5)
    assert summarize(perfect)['velocity']['model_over_persistence'] < 1e-3


def test_config_validation_names_the_key_path(tmp_path):
    cfg = load_run_config(ROOT / 'configs' / 'default.yaml', {'data': {'n_sims': 4}})
    assert cfg.data.n_sims == 4 and cfg.scenario.resolution == (32, 32)
    for name in ('default', 'burgers1d', 'smoke', 'burgers2d_research', 'smoke_research'):
        load_run_config(ROOT / 'configs' / f'{name}.yaml')
    cases = [
        ({'training': {'epoch': 3}}, r"config: training.epoch: unknown key; valid keys: \[.*'epochs'"),
        ({'training': {'epochs': 'ten'}}, r"training.epochs: expected an integer, got 'ten'"),
        (
            {'dataset': {'mode': 'disk'}},
            r"dataset.mode: unknown window source 'disk'; valid: \[.*'lazy'",
        ),
        (
            {'scenario': {'name': 'navier'}},
            r"scenario.name: unknown scenario 'navier'; valid: \[.*'burgers2d'",
        ),
        ({'scenario': {'name': 'burgers2d', 'resolution': [16]}}, r"scenario.resolution: must be 2 ints"),
        ({'model': {'architecture': 'transformer'}}, r"model.architecture: unknown architecture 'transformer'"),
        ({'data': {'split': [0.5, 0.6, 0.1]}}, r"data: split must be three non-negative fractions summing to 1"),
        ({'extra': 1}, r"extra: unknown section"),
    ]
    for data, pattern in cases:
        with pytest.raises(ConfigError, match=pattern):
            parse_run_config(data)
    bad = tmp_path / 'bad.yaml'
    bad.write_text('training:\n  epochs: [1\n')
    with pytest.raises(ConfigError, match='bad.yaml: invalid YAML'):
        load_run_config(bad)


def test_no_conversion_functions_in_the_training_path():
    text = (ROOT / 'phiml_data' / 'trainer.py').read_text()
    assert not re.search(r'\.native\(|\.numpy\(|import torch|from torch|torch_to_phiml|phiml_to_torch', text)


def test_legacy_pipeline_gives_the_same_windows_and_first_losses(datasets, burgers_dm, tmp_path):
    train, _ = datasets
    dm = burgers_dm
    ours = PhiMLDataset(dm, [0, 1, 2], n_targets=2, batch_size=8, shuffle=False, normalize=False)
    files = write_legacy_caches(dm, [0, 1, 2], tmp_path / 'legacy')
    loader = legacy_loader(files, ['velocity'], ['velocity'], n_targets=2, batch_size=8)
    batches = list(ours.iterate_batches())
    assert len(batches) == len(loader)
    for b, (init, targ) in zip(batches, loader):
        np.testing.assert_array_equal(b['initial_state'].numpy('batch,channels,x,y'), init.numpy())
        np.testing.assert_array_equal(b['targets'].numpy('batch,time,channels,x,y'), targ.numpy())
    # same initial weights, same data: same first losses
    trainer = Trainer(ours, None, SMALL, TrainConfig(epochs=1, progress=False, seed=0))
    legacy_net = copy.deepcopy(trainer.net)
    legacy_opt = torch.optim.Adam(legacy_net.parameters(), lr=1e-3, eps=1e-7)
    ours_losses, legacy_losses = [], []
    for b, (init, targ) in list(zip(batches, loader))[:3]:
        with trainer.backend:  # phiml.nn dispatches on the current backend; the trainer never sets a global one
            loss = nn.update_weights(trainer.net, trainer.optimizer, trainer.loss, b['initial_state'], b['targets'])
        ours_losses.append(float(math.stop_gradient(loss)))
        legacy_opt.zero_grad()
        loss = legacy_rollout_loss(legacy_net, init, targ, ['velocity.x', 'velocity.y'])
        loss.backward()
        legacy_opt.step()
        legacy_losses.append(loss.item())
    np.testing.assert_allclose(ours_losses, legacy_losses, rtol=1e-4)


@pytest.mark.parametrize('reattach', [True, False])
def test_static_fields_are_reattached_at_every_rollout_step(tmp_path, reattach):
    from phiml_data import DataManager, SmokePlume

    dm = DataManager(tmp_path, SmokePlume(resolution=16, steps=3))
    dm.generate(2, progress=False)
    ds = PhiMLDataset(dm, n_targets=2, batch_size=4)
    trainer = Trainer(ds, None, SMALL, TrainConfig(epochs=1, progress=False, reattach_static=reattach))
    history = trainer.fit()
    assert np.isfinite(history[0]['train_loss'])
    b = next(ds.iterate_batches())
    pred = trainer.step(b['initial_state'])
    assert pred.shape.get_item_names('channels') == ('velocity.x', 'velocity.y', 'density')
    state = trainer.surrogate.next_state(b['initial_state'], pred, b['initial_state'])
    assert state.shape.get_item_names('channels') == b['initial_state'].shape.get_item_names('channels')
    inflow = arrays(b['initial_state'].channels['inflow'])
    np.testing.assert_array_equal(arrays(state.channels['inflow']), inflow if reattach else 0 * inflow)
    partial_targets = PhiMLDataset(dm, n_targets=1, target_fields=('density',), stats=ds.stats)
    with pytest.raises(
        ValueError, match=r"target fields \['density'\] must be the dynamic input fields \['velocity', 'density'\]"
    ):
        Trainer(partial_targets, None, SMALL, TrainConfig(epochs=1, progress=False))


def test_a_config_means_the_same_network_on_both_backends():
    with pytest.raises(ConfigError, match=r'model.architecture: res_net is a different network on .* jax backend'):
        parse_run_config({'model': {'architecture': 'res_net'}, 'training': {'backend': 'jax', 'lr_decay': 1.0}})
    parse_run_config({'model': {'architecture': 'u_net'}, 'training': {'backend': 'jax', 'lr_decay': 1.0}})


def test_trainer_accepts_a_ready_network(datasets, tmp_path):
    train, val = datasets
    from phiml_data.backends import backend_named

    with backend_named('torch'):
        net = nn.conv_net(2, 2, layers=[8], in_spatial=2, periodic=True)
    trainer = Trainer(train, val, net, TrainConfig(epochs=1, progress=False), output=tmp_path)
    assert trainer.net is net and trainer.model_config is None
    history = trainer.fit()
    assert np.isfinite(history[0]['train_loss']) and (tmp_path / 'checkpoints' / 'last' / 'state.json').exists()


def test_an_independent_legacy_implementation_takes_the_same_steps(tmp_path):
    """Files written by the legacy route, a plain-torch network with copied weights, its own shuffle and normalisation:
    after one shuffled, normalised epoch the losses and the weights agree with the PhiML pipeline."""
    from legacy_pipeline import (
        LegacyConvNet,
        LegacyWindowDataset,
        copy_weights,
        legacy_order,
        legacy_scale,
        write_legacy_from_simulation,
    )
    from torch.utils.data import DataLoader

    from phiml_data import Burgers2D, DataManager

    scenario = Burgers2D(resolution=16, steps=8)
    dm = DataManager(tmp_path / 'cache', scenario)
    dm.generate(3, progress=False)
    ours = PhiMLDataset(dm, n_targets=2, batch_size=8, seed=3, prefetch=0)
    trainer = Trainer(
        ours,
        None,
        ModelConfig('conv_net', filters=8, layers=2),
        TrainConfig(epochs=1, learning_rate=1e-3, progress=False),
    )
    legacy_net = LegacyConvNet(2, 2, 8, 2)
    copy_weights(trainer.net, legacy_net)

    files = write_legacy_from_simulation(scenario, [0, 1, 2], tmp_path / 'legacy')
    scale = legacy_scale(files)
    assert scale == pytest.approx(ours.stats['velocity']['scale'], rel=1e-6)
    windows = LegacyWindowDataset(files, ['velocity'], ['velocity'], n_targets=2)
    loader = DataLoader(windows, batch_size=8, sampler=legacy_order(len(windows), seed=3, epoch=0))
    optimizer = torch.optim.Adam(legacy_net.parameters(), lr=1e-3, eps=1e-7)
    legacy_losses = []
    for init, targ in loader:
        loss = legacy_rollout_loss(legacy_net, init / scale, targ / scale, ['velocity.x', 'velocity.y'])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        legacy_losses.append(loss.item())

    history = trainer.fit()
    assert history[0]['steps'] == len(legacy_losses) == 3  # 3 sims x 7 windows: batches of 8, 8 and 5
    assert history[0]['train_loss'] == pytest.approx(np.mean(legacy_losses), rel=1e-4)
    for ours_p, legacy_p in zip(trainer.net.parameters(), legacy_net.parameters(), strict=True):
        np.testing.assert_allclose(ours_p.detach().numpy(), legacy_p.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_summary_compares_with_every_baseline_present():
    m = {
        'model': [0.1, 0.3],
        'zero': [1.0, 1.0],
        'persistence': [0.5, 0.9],
        'damped_persistence': [0.4, 0.6],
        'coarse_solver': [0.05, 0.5],
    }
    s = summarize({'fields': {'u': m}})['u']
    assert s['best_baseline'] == 'coarse_solver' and s['model_over_best_baseline'] == pytest.approx(0.2 / 0.275)
    assert not s['beats_best_baseline_every_step']  # step 1: 0.1 vs the coarse solver's 0.05
    del m['coarse_solver']
    s = summarize({'fields': {'u': m}})['u']
    assert s['best_baseline'] == 'damped_persistence' and s['beats_best_baseline_every_step']


def test_a_refined_ground_truth_is_also_compared_with_the_coarse_solver(tmp_path):
    from phiml_data import Burgers1D, DataManager

    dm = DataManager(tmp_path, Burgers1D(resolution=64, steps=6, scheme='spectral', refine=2))
    dm.generate(4, progress=False)
    train = PhiMLDataset(dm, [0, 1], n_targets=2)
    trainer = Trainer(train, None, ModelConfig('conv_net', filters=4, layers=1), TrainConfig(epochs=0, progress=False))
    m = evaluate(trainer.surrogate, trainer.train, [2, 3])['fields']['velocity']
    assert len(m['coarse_solver']) == 6 and max(m['coarse_solver']) < 0.01 < min(m['persistence'])
    assert summarize({'fields': {'velocity': m}})['velocity']['best_baseline'] == 'coarse_solver'


def test_a_network_correcting_the_coarse_solver_starts_from_it_and_learns(tmp_path):
    from phiml_data import Burgers1D, Burgers2D, DataManager
    from phiml_data.evaluation import coarse_solver
    from phiml_data.surrogate import Surrogate, solver_step

    dm = DataManager(tmp_path, Burgers1D(resolution=64, steps=6, scheme='spectral', refine=2))
    dm.generate(3, progress=False)
    train = PhiMLDataset(dm, [0, 1], n_targets=3, augment=False)
    trainer = Trainer(
        train, None, ModelConfig('conv_net', filters=4, layers=1, base='coarse_solver'), TrainConfig(progress=False)
    )
    b = next(train.iterate_batches(4))
    with trainer.backend:  # a network that predicts no correction: the rollout is the coarse solver itself
        zero = Surrogate(
            lambda x: x * 0,
            train.input_channels,
            train.target_channels,
            trainer.backend,
            base=solver_step(train),
        )
        rollout = train.layout.unpack(train.denormalize(zero.rollout(b['initial_state'], 3)))['velocity']
    initial = train.layout.unpack(train.denormalize(b['initial_state']))
    expected = coarse_solver(dm.scenario, initial, 3)['velocity']
    np.testing.assert_allclose(rollout.numpy('batch,time,x,vector'), expected.numpy('batch,time,x,vector'), atol=1e-5)
    history = trainer.fit(3)
    assert history[-1]['train_loss'] < history[0]['train_loss']
    with pytest.raises(ValueError, match="model.base 'coarse_solver' needs ground truth simulated on a finer grid"):
        small = DataManager(tmp_path / 'phiflow', Burgers2D(resolution=8, steps=2))
        small.generate(1, progress=False)
        Trainer(
            PhiMLDataset(small, [0], n_targets=1), None, ModelConfig(base='coarse_solver'), TrainConfig(progress=False)
        )


def test_a_diverged_coarse_solver_counts_as_an_infinite_error(tmp_path, monkeypatch):
    from phiml_data import Burgers1D, DataManager, evaluation

    dm = DataManager(tmp_path, Burgers1D(resolution=64, steps=4, scheme='spectral', refine=2))
    dm.generate(3, progress=False)
    train = PhiMLDataset(dm, [0, 1], n_targets=2)
    trainer = Trainer(train, None, ModelConfig('conv_net', filters=4, layers=1), TrainConfig(epochs=0, progress=False))
    solve = evaluation.coarse_solver
    monkeypatch.setattr(evaluation, 'coarse_solver', lambda *a: {f: v * float('nan') for f, v in solve(*a).items()})
    m = evaluate(trainer.surrogate, trainer.train, [2])['fields']['velocity']
    assert m['coarse_solver'] == [float('inf')] * 4
    assert summarize({'fields': {'velocity': m}})['velocity']['best_baseline'] != 'coarse_solver'


def test_training_with_prefetch_and_a_solver_in_the_loop_is_deterministic(tmp_path):
    from phiml_data import Burgers1D, DataManager

    dm = DataManager(tmp_path, Burgers1D(resolution=64, steps=8, scheme='spectral', refine=2))
    dm.generate(3, progress=False)
    model = ModelConfig('res_net', filters=8, layers=2, base='coarse_solver', scale_output='global')
    runs = []
    for _ in range(2):
        train = PhiMLDataset(dm, [0, 1, 2], n_targets=3, batch_size=8, prefetch=2)
        trainer = Trainer(train, None, model, TrainConfig(epochs=2, loss='over_base', progress=False))
        runs.append([r['train_loss'] for r in trainer.fit()])
    assert runs[0] == runs[1]


@pytest.mark.parametrize(
    'scenario',
    [
        ('Burgers1D', dict(resolution=32, scheme='spectral')),
        ('Burgers2D', dict(resolution=(16, 16), scheme='spectral')),
    ],
    ids=lambda s: s[0],
)  # the only scheme with a coarse solver (refine > 1)
def test_the_base_is_rolled_out_once_per_window_and_its_error_holds_for_every_augmentation(tmp_path, scenario):
    """The memo behind `Trainer.base_error`: later epochs see other flips, shifts and swaps of a window, whose error
    under the coarse solver is the remembered one (the augmentations are symmetries of its solver), without solving."""
    import phiml_data
    from phiml_data import DataManager
    from phiml_data.losses import square_error

    name, kwargs = scenario
    dm = DataManager(tmp_path, getattr(phiml_data, name)(steps=5, refine=2, **kwargs))
    dm.generate(3, progress=False)
    train = PhiMLDataset(dm, [0, 1], n_targets=3, batch_size=4, augment=True)
    val = PhiMLDataset(dm, [2], n_targets=3, batch_size=4, stats=train.stats, shuffle=False)
    trainer = Trainer(train, val, ModelConfig('conv_net', filters=4, layers=1, base='coarse_solver'), TrainConfig())
    calls, base = [], trainer.surrogate.base
    trainer.surrogate.base = lambda frame: calls.append(1) or base(frame)
    rolled = lambda b: square_error(trainer.surrogate.rollout(b['initial_state'], 3, correct=False), b['targets'])
    states = lambda b: dict(zip(b['window_ids'].numpy().tolist(), math.unstack(b['initial_state'], 'batch')))
    with trainer.backend:
        first = {}
        for b in train.iterate_batches(epoch=0, drop_last=False):
            trainer.base_error(b, train)
            first.update(states(b))
        moved = 0
        for b in train.iterate_batches(epoch=1):
            solved = len(calls)
            remembered = trainer.base_error(b, train)
            assert len(calls) == solved, 'a remembered window was rolled out again'
            fresh = rolled(b)
            np.testing.assert_allclose(remembered.numpy('batch,time'), fresh.numpy('batch,time'), rtol=1e-3, atol=1e-9)
            moved += sum(not math.equal(first[i], x) for i, x in states(b).items())
        assert moved >= len(train) // 2, f'only {moved} of {len(train)} windows were augmented differently in epoch 1'
        for b in val.iterate_batches():  # another dataset with the same window ids: its own errors
            np.testing.assert_allclose(trainer.base_error(b, val).numpy('batch,time'), rolled(b).numpy('batch,time'))
