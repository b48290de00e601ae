"""Hybrid training (`phiml_data.hybrid`): cycles of network and physical model that exchange generated samples."""

import json

import numpy as np
import pytest

from phiml_data import Burgers1D, DataManager, ModelConfig, PhiMLDataset, TrainConfig, Trainer
from phiml_data.hybrid import HybridConfig, HybridTrainer, predictions
from phiml_data.physical import PhysicalConfig, PhysicalTrainer

torch = pytest.importorskip('torch')
CONFIG = HybridConfig(warmup_epochs=1, cycles=2, network_epochs=1, physical_epochs=1, alpha=0.25)


@pytest.fixture(scope='module')
def dm(tmp_path_factory):
    manager = DataManager(
        tmp_path_factory.mktemp('hybrid'), Burgers1D(resolution=32, steps=10, scheme='spectral', viscosity=0.05)
    )
    manager.generate(4, progress=False)
    return manager


def _hybrid(dm, output=None, config=CONFIG):
    train = PhiMLDataset(dm, [0, 1, 2], n_targets=3, batch_size=8)
    val = PhiMLDataset(dm, [3], n_targets=3, stats=train.stats, shuffle=False)
    network = Trainer(train, val, ModelConfig('conv_net', filters=8, layers=1), TrainConfig(progress=False))
    physical = PhysicalTrainer(train, val, PhysicalConfig({'viscosity': 0.25}, epochs=1))
    return HybridTrainer(network, physical, config, output)


def test_mixed_windows_hold_exactly_the_requested_fraction_and_validation_none(dm):
    hybrid = _hybrid(dm)
    generated = predictions(hybrid.physical, hybrid.real)
    assert generated[0].shape.get_size('window') == len(hybrid.real) == 24
    mixed = hybrid.mixed(generated)
    order = mixed.epoch_order(3)
    n_generated = int((order >= len(mixed)).sum())
    assert n_generated == mixed.n_generated() == 8 and n_generated / len(order) == CONFIG.alpha
    hybrid.fit()
    assert hybrid.network.train.n_generated() == 8 and hybrid.physical.train.n_generated() == 8
    assert hybrid.network.val.n_generated() == 0 and hybrid.physical.val.n_generated() == 0  # never in validation
    assert [r['phase'] for r in hybrid.log] == ['warmup', 'cycle 1', 'cycle 2']


def test_a_resumed_hybrid_run_equals_an_uninterrupted_one(dm, tmp_path):
    whole = _hybrid(dm)
    whole.fit()
    _hybrid(dm, tmp_path, HybridConfig(**{**CONFIG.__dict__, 'cycles': 1})).fit()  # stops after cycle 1
    resumed = _hybrid(dm).resume(tmp_path)
    assert resumed.cycle == 1 and json.loads((tmp_path / 'hybrid.json').read_text())['cycle'] == 1
    resumed.fit()
    assert resumed.physical.params() == whole.physical.params()
    for a, b in zip(resumed.network.net.parameters(), whole.network.net.parameters()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_the_main_job_runs_every_mode_and_records_parameters(tmp_path):
    from phiml_data.cli import main

    config = tmp_path / 'c.yaml'
    config.write_text(
        f"scenario: {{name: burgers1d, resolution: [32], steps: 10, scheme: spectral, viscosity: 0.05}}\n"
        f"data: {{cache_dir: '{tmp_path / 'cache'}', n_sims: 8}}\ndataset: {{n_targets: 3, batch_size: 8}}\n"
        "model: {architecture: conv_net, filters: 8, layers: 1}\ntraining: {epochs: 1}\n"
        "physical: {initial: {viscosity: 0.25}, epochs: 1}\nhybrid: {warmup_epochs: 1, cycles: 1, alpha: 0.25}\n"
        "evaluation: {min_test_sims: 1}\n"
    )
    for mode in ('synthetic', 'physical', 'hybrid'):
        out = tmp_path / mode
        assert main(['run', '--config', str(config), '--quiet', f'training.mode={mode}', f'output={out}']) == 0
        metrics = json.loads((out / 'metrics.json').read_text())
        splits = json.loads((out / 'splits.json').read_text())
        assert metrics['mode'] == mode and splits['generated_fraction'] == {
            'train': 0.25 if mode == 'hybrid' else 0.0,
            'val': 0.0,
            'test': 0.0,
        }
        if mode != 'synthetic':
            p = metrics['parameters']['viscosity']
            assert p['initial'] == 0.25 and p['simulated_with'] == 0.05 and (out / 'parameters.png').exists()
            assert len(p['history']) >= 1 and np.isfinite(metrics['summary']['velocity']['model'])
    assert metrics['parameters']['viscosity']['fitted'] > 0 and len(metrics['hybrid']) == 2
    physical = json.loads((tmp_path / 'physical' / 'metrics.json').read_text())['parameters']['viscosity']
    assert physical['relative_error'] < 1e-2
    for mode in ('synthetic', 'physical'):  # a saved model evaluated again on its test sims gives the run's numbers
        assert main(['evaluate', str(tmp_path / mode), '--quiet']) == 0
        again = json.loads((tmp_path / mode / 'evaluate' / 'metrics.json').read_text())['summary']['velocity']['model']
        run = json.loads((tmp_path / mode / 'metrics.json').read_text())['summary']['velocity']['model']
        assert again == pytest.approx(run, rel=1e-6)
