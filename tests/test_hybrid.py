"""Hybrid training (`phiml_data.hybrid`): cycles of network and physical model that exchange generated samples."""

import dataclasses
import json

import numpy as np
import pytest

from phiml_data import Burgers1D, DataManager, ModelConfig, PhiMLDataset, TrainConfig, Trainer
from phiml_data.checkpoints import CheckpointError
from phiml_data.hybrid import (
    NEW_STATE_INDEX,
    HybridConfig,
    HybridTrainer,
    initial_frames,
    new_state_indices,
    predictions,
)
from phiml_data.physical import PhysicalConfig, PhysicalTrainer

torch = pytest.importorskip('torch')
CONFIG = HybridConfig(warmup_epochs=1, cycles=2, network_epochs=1, physical_epochs=1, alpha=0.25, new_states=2)


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


@pytest.mark.slow
def test_mixed_windows_hold_exactly_the_requested_fraction_and_validation_none(dm):
    hybrid = _hybrid(dm, config=dataclasses.replace(CONFIG, exchange='windows'))
    generated = predictions(hybrid.physical, hybrid.real)
    assert generated[0].shape.get_size('window') == len(hybrid.real) == 24
    mixed = hybrid.mix(generated, CONFIG.alpha)
    order = mixed.epoch_order(3)
    n_generated = int((order >= len(mixed)).sum())
    assert n_generated == mixed.n_generated() == 8 and n_generated / len(order) == CONFIG.alpha
    hybrid.fit()
    assert hybrid.mixed['network'].n_generated() == 8 and hybrid.mixed['physical'].n_generated() == 8
    assert hybrid.network.train.n_generated() == 0 and hybrid.network.val.n_generated() == 0  # never reassigned
    assert [r['phase'] for r in hybrid.log] == ['warmup', 'cycle 1', 'cycle 2']
    for physical_alpha, n_physical in ((0.5, 24), (0.0, 0)):  # the physical model's share, set apart from the network's
        other = _hybrid(
            dm, config=dataclasses.replace(CONFIG, exchange='windows', cycles=1, physical_alpha=physical_alpha)
        )
        other.fit()
        assert other.mixed['network'].n_generated() == 8 and other.mixed['physical'].n_generated() == n_physical
    with pytest.raises(ValueError, match=r'physical_alpha must be in \[0, 1\), got 1.0'):
        HybridConfig(physical_alpha=1.0)


@pytest.mark.slow
def test_new_states_are_fresh_initial_conditions_in_no_split_and_the_physical_model_fits_first(dm):
    hybrid = _hybrid(dm)
    assert new_state_indices(CONFIG, 1) == [NEW_STATE_INDEX + 2, NEW_STATE_INDEX + 3]
    first = initial_frames(hybrid.real, new_state_indices(CONFIG, 0))
    assert first.shape.get_size('batch') == 2 and not set(new_state_indices(CONFIG, 0)) & set(dm.cached_indices())
    samples = hybrid.physical_samples()  # whole trajectories from the fresh states, cut like the data (8 windows each)
    assert samples[0].shape.get_size('window') == 2 * 8 and samples[1].shape.get_size('time') == 3
    np.testing.assert_allclose(  # a window's first frame is the fresh initial condition itself
        samples[0].window[0].numpy('x,channels'), hybrid.real.denormalize(first).batch[0].numpy('x,channels'), rtol=1e-5
    )
    hybrid.fit()
    assert hybrid.log[1]['new_states'] == new_state_indices(CONFIG, 0) and hybrid.physical.epoch == 2
    assert hybrid.log[1]['params']['viscosity'] != hybrid.log[0]['params']['viscosity']  # fitted before generating


@pytest.mark.slow
def test_a_resumed_hybrid_run_equals_an_uninterrupted_one(dm, tmp_path):
    whole = _hybrid(dm)
    whole.fit()
    _hybrid(dm, tmp_path, dataclasses.replace(CONFIG, cycles=1)).fit()  # stops after cycle 1
    resumed = _hybrid(dm).resume(tmp_path)
    assert resumed.cycle == 1 and json.loads((tmp_path / 'state.json').read_text())['state']['cycle'] == 1
    resumed.fit()
    assert resumed.physical.params() == whole.physical.params()
    for a, b in zip(resumed.network.net.parameters(), whole.network.net.parameters()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_a_crash_between_the_two_checkpoints_of_a_cycle_resumes_from_the_last_whole_cycle(dm, tmp_path, monkeypatch):
    """The failure of issue #28.1: the network's checkpoint of cycle 2 written, the physical model's not."""
    whole = _hybrid(dm)
    whole.fit()
    crashing = _hybrid(dm, tmp_path)
    calls = []

    def crash_on_the_second_cycle(path):
        calls.append(path)
        if len(calls) == 3:  # warm-up, cycle 1, then cycle 2's physical checkpoint
            raise KeyboardInterrupt('killed')
        return PhysicalTrainer.save_checkpoint(crashing.physical, path)

    monkeypatch.setattr(crashing.physical, 'save_checkpoint', crash_on_the_second_cycle)
    with pytest.raises(KeyboardInterrupt):
        crashing.fit()
    resumed = _hybrid(dm).resume(tmp_path)
    assert resumed.cycle == 1 and resumed.physical.epoch == 1 and resumed.network.epoch == 2
    resumed.fit()
    assert resumed.physical.params() == whole.physical.params()
    for a, b in zip(resumed.network.net.parameters(), whole.network.net.parameters()):
        assert torch.equal(a, b)


def test_a_hybrid_commit_of_another_alpha_is_refused(dm, tmp_path):
    _hybrid(dm, tmp_path, dataclasses.replace(CONFIG, cycles=0)).fit()  # the warm-up's commit
    with pytest.raises(
        CheckpointError, match=r"state.json was written by another configuration: hybrid.alpha is 0.25 there, 0.5 here"
    ):
        _hybrid(dm, config=dataclasses.replace(CONFIG, alpha=0.5)).resume(tmp_path)


KILLED_RUN = """
import sys
from pathlib import Path
from phiml_data import Burgers1D, DataManager, ModelConfig, PhiMLDataset, TrainConfig, Trainer
from phiml_data.hybrid import HybridConfig, HybridTrainer
from phiml_data.physical import PhysicalConfig, PhysicalTrainer

kind, cache, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
dm = DataManager(cache, Burgers1D(resolution=32, steps=10, scheme='spectral', viscosity=0.05))
train = PhiMLDataset(dm, [0, 1, 2], n_targets=3, batch_size=8)
val = train.variant(sims=[3], shuffle=False)
network = Trainer(train, val, ModelConfig('conv_net', filters=8, layers=1), TrainConfig(epochs=6, progress=False), out)
physical = PhysicalTrainer(train, val, PhysicalConfig({'viscosity': 0.25}, 'adam', epochs=6), output=out / 'physical')
config = HybridConfig(warmup_epochs=1, cycles=3, network_epochs=1, physical_epochs=1, alpha=0.25, new_states=2)
{'network': network, 'physical': physical, 'hybrid': HybridTrainer(network, physical, config, out / 'hybrid')}[kind].fit()
"""


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['network', 'physical', 'hybrid'])
def test_a_kill_9_at_any_point_then_a_resume_gives_the_uninterrupted_result_or_one_clear_error(dm, tmp_path, kind):
    """Issue #28, done when: kill -9 while training or writing a checkpoint, resume, compare with no kill."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    def trainers(out):
        train = PhiMLDataset(dm, [0, 1, 2], n_targets=3, batch_size=8)
        val = train.variant(sims=[3], shuffle=False)
        network = Trainer(
            train, val, ModelConfig('conv_net', filters=8, layers=1), TrainConfig(epochs=6, progress=False), out
        )
        config = PhysicalConfig({'viscosity': 0.25}, 'adam', epochs=6)
        physical = PhysicalTrainer(train, val, config, output=None if out is None else out / 'physical')
        hybrid = HybridConfig(warmup_epochs=1, cycles=3, network_epochs=1, physical_epochs=1, alpha=0.25, new_states=2)
        return network, physical, HybridTrainer(network, physical, hybrid, None if out is None else out / 'hybrid')

    whole = trainers(None)
    {'network': whole[0], 'physical': whole[1], 'hybrid': whole[2]}[kind].fit()
    resumed = 0
    for delay in (4.5, 6.0, 7.5):  # import and start take about 4 s: kills before, during and between commits
        out = tmp_path / f'{delay}'
        proc = subprocess.Popen(
            [sys.executable, '-c', KILLED_RUN, kind, str(dm.cache.directory.parent), str(out)], cwd=ROOT
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        network, physical, hybrid = trainers(out)
        try:
            if kind == 'network':
                network.load_checkpoint(out / 'checkpoints' / 'last').fit()
            elif kind == 'physical':
                physical.load_checkpoint(out / 'physical' / 'checkpoints' / 'last').fit()
            else:
                hybrid.resume(out / 'hybrid').fit()
        except CheckpointError as err:  # killed before its first commit: one clear line, and a fresh start
            assert 'checkpoint in' in str(err) and 'state.json missing' in str(err), err
            continue
        if kind != 'physical':
            for a, b in zip(network.net.parameters(), whole[0].net.parameters()):
                assert torch.equal(a, b), delay
        if kind != 'network':
            assert physical.params() == whole[1].params(), delay
        resumed += 1
    assert resumed >= 1  # at least one kill came after a commit
