"""Issue #14: every bad input gets a clear error naming the value, file or parameter; the CLI answers in one line."""

import json
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, arrays
from phiml_data import Burgers2D, CacheError, ConfigError, DataManager, PhiMLDataset
from phiml_data.config import parse_run_config
from phiml_data.dataset import record_split
from phiml_data.trainer import ModelConfig, TrainConfig, Trainer

SMALL = Burgers2D(resolution=16, steps=6)


@pytest.fixture
def dm(small_cache):
    return small_cache


def test_lazy_reads_work_for_every_format(tmp_path):
    npz = DataManager(tmp_path, SMALL, 'npz', allow_pickle=True)
    npz.generate(2, progress=False)
    lazy = list(PhiMLDataset(npz, mode='lazy', n_targets=2, normalize=False).iterate_batches(5))
    memory = list(PhiMLDataset(npz, mode='memory', n_targets=2, normalize=False).iterate_batches(5))
    assert len(lazy) == len(memory)
    for a, b in zip(lazy, memory):
        np.testing.assert_array_equal(arrays(a['targets']), arrays(b['targets']))


def test_validation_set_with_its_own_statistics_is_refused(dm):
    train = PhiMLDataset(dm, [0, 1], n_targets=1)
    with pytest.raises(ValueError, match=r'validation dataset normalises with other statistics.*stats=train.stats'):
        Trainer(
            train,
            PhiMLDataset(dm, [2], n_targets=1),
            ModelConfig('conv_net', filters=4, layers=1),
            TrainConfig(progress=False),
        )
    Trainer(
        train,
        PhiMLDataset(dm, [2], n_targets=1, stats=train.stats),
        ModelConfig('conv_net', filters=4, layers=1),
        TrainConfig(progress=False),
    )


def test_bad_counts_and_sizes_name_the_value(dm):
    ds = PhiMLDataset(dm, n_targets=2, normalize=False)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match=rf'batch_size must be an integer >= 1 .*got {bad!r}'):
            next(ds.iterate_batches(bad))
        with pytest.raises(ValueError, match='batch_size must be an integer >= 1'):
            ds.n_batches(bad)
    with pytest.raises(ValueError, match=r'integers >= 0, got -1'):
        dm.generate([-1], progress=False)
    with pytest.raises(ValueError, match=r'steps must be an integer >= 1, got -1'):
        Burgers2D(steps=-1)
    with pytest.raises(ConfigError, match=r'scenario.steps: must be an integer >= 1'):
        parse_run_config({'scenario': {'steps': -1}})
    with pytest.raises(
        ConfigError, match=r'training.epochs: a run trains, then evaluates its best checkpoint: need >= 1, got 0'
    ):
        parse_run_config({'training': {'epochs': 0}})


def test_corrupted_json_files_name_the_file(dm):
    ds = PhiMLDataset(dm, [0, 1], n_targets=2)
    stats = next(dm.directory.glob('stats-*.json'))
    stats.write_text('{"fields": ')
    with pytest.raises(CacheError, match=rf'{stats.name} is not valid JSON .*normalisation statistics'):
        PhiMLDataset(dm, [0, 1], n_targets=2)
    (dm.directory / 'config.json').write_text('not json')
    with pytest.raises(CacheError, match=r'config.json is not valid JSON'):
        dm.generate(3, progress=False)
    assert ds.stats


def test_read_only_shared_cache_is_usable(dm, tmp_path, monkeypatch):
    import phiml_data.cache as cache_module

    before = sorted(p.name for p in dm.directory.iterdir())
    monkeypatch.setattr(cache_module.os, "access", lambda path, mode: False)  # as root, chmod cannot make it read-only
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'user'))
    import phiml_data.generation as generation

    monkeypatch.setattr(generation, 'check_flock', lambda d: pytest.fail('a complete cache needs no lock'))
    shared = DataManager(dm.directory.parent, SMALL)
    assert shared.generate(3, progress=False) == []
    train = PhiMLDataset(shared, [0, 1], n_targets=2)
    record_split(shared, {'train': [0, 1], 'val': [2], 'test': []}, (0.7, 0.3, 0), 0)
    next(train.iterate_batches())
    assert sorted(p.name for p in dm.directory.iterdir()) == before
    assert len(list((tmp_path / 'user' / 'phiml_data' / dm.directory.name).glob('*.json'))) == 2


def cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, '-m', 'phiml_data', *map(str, args)], capture_output=True, text=True, cwd=ROOT, **kwargs
    )


def _config(tmp_path, cache_dir, n_sims=4, **sections):
    text = f"scenario: {{name: burgers2d, resolution: [16, 16], steps: 6}}\ndata: {{cache_dir: '{cache_dir}', n_sims: {n_sims}}}\n"
    text += f"output: '{tmp_path / 'out'}'\n"  # never the checkout's outputs/
    text += ''.join(f"{k}: {json.dumps(v)}\n" for k, v in sections.items())
    path = tmp_path / 'c.yaml'
    path.write_text(text)
    return path


def assert_one_line_error(result, fragment):
    assert result.returncode == 2, result.stderr
    assert 'Traceback' not in result.stderr and result.stderr.startswith('error: ') and fragment in result.stderr, (
        result.stderr
    )


@pytest.mark.slow
def test_cli_prints_one_line_for_expected_errors(dm, tmp_path):
    config = _config(tmp_path, dm.directory.parent)
    assert_one_line_error(cli('migrate', tmp_path / 'nowhere', '--config', config), 'nowhere does not exist')
    (dm.directory / 'manifest.json').write_text('{')
    assert_one_line_error(cli('generate', '--config', config, '--quiet'), 'manifest.json is corrupted')
    assert_one_line_error(cli('inspect', dm.directory), 'manifest.json is corrupted')  # the same check as generate
    (tmp_path / 'a_file').write_text('')
    assert_one_line_error(cli('generate', '--config', _config(tmp_path, tmp_path / 'a_file'), '--quiet'), 'a_file')
    assert_one_line_error(
        cli(
            'run',
            '--config',
            _config(tmp_path, tmp_path / 'c2', dataset={'n_targets': 50}, evaluation={'min_test_sims': 1}),
            '--quiet',
        ),
        'longer than the trajectories',
    )
    assert_one_line_error(
        cli('run', '--config', _config(tmp_path, tmp_path / 'c3', n_sims=2), '--quiet'), '(the test split is empty)'
    )
    debug = cli(
        '--debug',
        'run',
        '--config',
        _config(tmp_path, tmp_path / 'c2', dataset={'n_targets': 50}, evaluation={'min_test_sims': 1}),
        '--quiet',
    )
    assert debug.returncode == 2 and 'Traceback' in debug.stderr


@pytest.mark.slow
def test_cli_inspect_of_a_truncated_sim(dm):
    dm.path(0).write_bytes(dm.path(0).read_bytes()[:1000])
    assert_one_line_error(cli('inspect', dm.directory), 'sim_000000.h5 is truncated')


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))


@pytest.mark.slow
def test_a_write_that_fails_with_efbig_is_an_error_not_a_crash(tmp_path):
    config = _config(tmp_path, tmp_path / 'cache')
    result = cli('generate', '--config', config, '--quiet', preexec_fn=_limit_file_size)
    assert_one_line_error(result, 'File too large')
    assert not list((tmp_path / 'cache').rglob('sim_*.h5')) and not list((tmp_path / 'cache').rglob('*.tmp'))
