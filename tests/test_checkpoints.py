"""Checkpoints as commits (`phiml_data.checkpoints`, `training.EpochTrainer`): a checkpoint is whole or refused in
one line naming the file, and is only read by a trainer of the same configuration (issue #28.2, 4, 9, 11)."""

import json

import pytest

from phiml_data import Burgers1D, DataManager, ModelConfig, PhiMLDataset, TrainConfig
from phiml_data.checkpoints import CheckpointError, commit, read
from phiml_data.physical import PhysicalConfig, PhysicalTrainer

torch = pytest.importorskip('torch')
from phiml_data.trainer import Trainer  # noqa: E402

ADAM = PhysicalConfig({'viscosity': 0.25}, optimizer='adam', epochs=1)


@pytest.fixture(scope='module')
def train(tmp_path_factory):
    dm = DataManager(
        tmp_path_factory.mktemp('ckpt'), Burgers1D(resolution=32, steps=6, scheme='spectral', viscosity=0.1)
    )
    dm.generate(2, progress=False)
    return PhiMLDataset(dm, n_targets=2, batch_size=8)


@pytest.fixture(scope='module')
def physical_checkpoint(train, tmp_path_factory):
    out = tmp_path_factory.mktemp('physical')
    PhysicalTrainer(train, config=ADAM, output=out).fit()
    return out / 'checkpoints' / 'last'


def test_a_physical_checkpoint_of_another_optimizer_or_other_data_is_refused_naming_the_key(
    train, physical_checkpoint, tmp_path
):
    with pytest.raises(
        CheckpointError,
        match=r"state.json was written by another configuration: trainer.optimizer is 'adam' there, 'lbfgs' here",
    ):
        PhysicalTrainer(train, config=PhysicalConfig({'viscosity': 0.25}, epochs=1)).load_checkpoint(
            physical_checkpoint
        )
    dm = DataManager(tmp_path, Burgers1D(resolution=32, steps=6, scheme='spectral', viscosity=0.2))
    dm.generate(2, progress=False)
    with pytest.raises(
        CheckpointError, match=r"another configuration: cache_key is '[0-9a-f]+' there, '[0-9a-f]+' here"
    ):
        PhysicalTrainer(PhiMLDataset(dm, n_targets=2, batch_size=8), config=ADAM).load_checkpoint(physical_checkpoint)
    assert PhysicalTrainer(train, config=ADAM).load_checkpoint(physical_checkpoint).epoch == 1


@pytest.mark.parametrize('value', ['NaN', 'Infinity'])
def test_a_non_finite_parameter_or_moment_is_refused(train, physical_checkpoint, tmp_path, value):
    for key in ('theta', 'adam'):
        data = json.loads((physical_checkpoint / 'state.json').read_text())
        target = data['state']['theta'] if key == 'theta' else data['state']['adam']['m']
        target[0] = float(value.replace('Infinity', 'inf'))
        (tmp_path / key).mkdir()
        (tmp_path / key / 'state.json').write_text(json.dumps(data))
        with pytest.raises(CheckpointError, match=rf"{key}.*is (nan|inf) \(non-finite\); refusing it"):
            PhysicalTrainer(train, config=ADAM).load_checkpoint(tmp_path / key)


@pytest.mark.parametrize(
    'content, expected',
    [
        ('[]', "is damaged or not a checkpoint of this version: expected a JSON object with 'state'"),
        ('{"state": {"epoch": 1', 'is damaged (not valid JSON'),
        ('', 'is damaged (not valid JSON'),
    ],
)
def test_a_damaged_commit_names_its_file(tmp_path, content, expected):
    (tmp_path / 'state.json').write_text(content)
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'state.json'} {expected}".replace('(', r'\(')):
        read(tmp_path)


def test_a_damaged_or_foreign_network_part_or_another_network_size_is_one_line(train, tmp_path):
    model = ModelConfig('conv_net', filters=4, layers=1)
    Trainer(train, None, model, TrainConfig(epochs=1, progress=False), output=tmp_path).fit()
    last = tmp_path / 'checkpoints' / 'last'
    bigger = ModelConfig('conv_net', filters=8, layers=1)
    with pytest.raises(CheckpointError, match=r"another configuration: model.filters is 4 there, 8 here"):
        Trainer(train, None, bigger, TrainConfig(progress=False)).load_checkpoint(last)
    net = next(last.glob('net-*.pth'))
    net.write_bytes(b'garbage')
    with pytest.raises(CheckpointError, match=rf"part {net} is damaged: its SHA-256 differs"):
        Trainer(train, None, model, TrainConfig(progress=False)).load_checkpoint(last)


def test_a_commit_interrupted_before_its_state_json_leaves_the_previous_one(tmp_path):
    """A kill between writing the parts and the commit file: the old commit and its parts are intact."""
    write = lambda text: lambda stem: (stem.with_suffix('.txt').write_text(text), stem.with_suffix('.txt'))[1]
    commit(tmp_path, {'epoch': 1}, {'part': write('one')})

    def killed(stem):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        commit(tmp_path, {'epoch': 2}, {'part': write('two'), 'other': killed})
    state, parts = read(tmp_path)
    assert state['epoch'] == 1 and parts['part'].read_text() == 'one'
    commit(tmp_path, {'epoch': 3}, {'part': write('three')})
    assert sorted(p.name for p in tmp_path.iterdir()) == ['part-e0003.txt', 'state.json']  # earlier parts removed


def test_non_finite_values_are_never_committed(tmp_path):
    with pytest.raises(CheckpointError, match=r"history\[0\].train_loss is nan"):
        commit(tmp_path, {'epoch': 1, 'history': [{'train_loss': float('nan')}]})
    assert not (tmp_path / 'state.json').exists()
