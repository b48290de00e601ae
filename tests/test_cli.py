"""The command line (`phiml_data.cli`): every expected error is one line naming the key, file or value."""

import json
import resource
import signal
import subprocess
import sys
import warnings

import pytest

from conftest import ROOT
from phiml_data import cli


def _error(capsys, *argv) -> str:
    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'Traceback' not in err, err
    return err


@pytest.mark.parametrize(
    'override, expected',
    [
        ('scenario=5', 'scenario: expected a mapping such as {name: burgers2d'),
        ('scenario.name=[a, b]', "scenario.name: unknown scenario ['a', 'b']; valid: ["),
        ('scenario.seed=-5', 'scenario.seed: must be an integer >= 0, got -5'),
        ('scenario.steps=true', 'scenario.steps: expected an integer, got True'),
    ],
)
def test_bad_overrides_are_one_line_naming_the_key(capsys, override, expected):
    err = _error(capsys, 'generate', '--config', str(ROOT / 'configs' / 'default.yaml'), '--quiet', override)
    assert expected in err and err.count('\n') == 1, err


def test_numbers_in_exponent_notation_are_numbers():
    assert cli.parse_overrides(['training.learning_rate=1e-3', 'scenario.amplitude=2.5E2', 'output=1e3x']) == {
        'training': {'learning_rate': 0.001},
        'scenario': {'amplitude': 250.0},
        'output': '1e3x',
    }


def test_warnings_before_an_error_do_not_bury_it(capsys, monkeypatch):
    def diverging(args):
        for i in range(18):
            warnings.warn(f'overflow encountered in multiply ({i})', RuntimeWarning)
        raise ValueError("Sim 0: field 'velocity' contains NaN or Inf")

    monkeypatch.setitem(cli._COMMANDS, 'generate', diverging)
    err = _error(capsys, 'generate')
    assert err.splitlines() == [
        "error: Sim 0: field 'velocity' contains NaN or Inf",
        '(18 warnings before the error; --debug shows them)',
    ]
    assert cli.main(['--debug', 'generate']) == 2
    assert 'overflow encountered in multiply (17)' in capsys.readouterr().err


def test_zero_sims_is_refused_debug_works_after_the_command_and_help_lists_every_command(capsys):
    config = str(ROOT / 'configs' / 'default.yaml')
    assert 'n_sims must be >= 1, got 0' in _error(capsys, 'generate', '--config', config, '--n-sims', '0')
    assert cli.main(['generate', '--config', config, '--n-sims', '0', '--debug']) == 2
    assert 'Traceback' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(['--help'])
    usage = capsys.readouterr().out
    assert all(f'phiml-data {c}' in usage for c in ('generate', 'inspect', 'migrate', 'import', 'export', 'run'))


def test_generate_verify_reports_what_it_checked_quarantined_and_regenerated(tmp_path, capsys):
    import h5py

    config = tmp_path / 'c.yaml'
    config.write_text(
        f"scenario: {{name: burgers1d, resolution: [32], steps: 3}}\ndata: {{cache_dir: '{tmp_path}', n_sims: 2}}\n"
    )
    assert cli.main(['generate', '--config', str(config), '--quiet']) == 0
    assert (
        'checked 2 sims (size and header); moved 0 broken files to quarantine/; simulated 2 sims [0, 1]'
        in capsys.readouterr().out
    )
    path = next(tmp_path.glob('burgers1d-*/sim_000001.h5'))
    with h5py.File(path, 'r+') as f:
        f['root[velocity]'][2, 0, 0] += 1
    assert cli.main(['generate', '--config', str(config), '--quiet', '--verify']) == 0
    out = capsys.readouterr().out
    assert (
        'checked 2 sims (every frame); moved 1 broken files to quarantine/ [' in out and 'simulated 1 sims [1]' in out
    )


def test_a_run_never_overwrites_an_earlier_run_unless_asked(tmp_path):
    out = tmp_path / 'out'
    assert cli.fresh_folder(out) == out
    for n in (2, 3):
        (cli.fresh_folder(out)).mkdir()
        (cli.fresh_folder(out) / 'config.yaml').write_text('earlier run')
        assert cli.fresh_folder(out) == tmp_path / f'out-{n}'


def run_cli(*args, **kwargs):
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
    assert_one_line_error(run_cli('migrate', tmp_path / 'nowhere', '--config', config), 'nowhere does not exist')
    (dm.directory / 'manifest.json').write_text('{')
    assert_one_line_error(run_cli('generate', '--config', config, '--quiet'), 'manifest.json is corrupted')
    assert_one_line_error(run_cli('inspect', dm.directory), 'manifest.json is corrupted')  # the same check as generate
    (tmp_path / 'a_file').write_text('')
    assert_one_line_error(run_cli('generate', '--config', _config(tmp_path, tmp_path / 'a_file'), '--quiet'), 'a_file')
    assert_one_line_error(
        run_cli(
            'run',
            '--config',
            _config(tmp_path, tmp_path / 'c2', dataset={'n_targets': 50}, evaluation={'min_test_sims': 1}),
            '--quiet',
        ),
        'longer than the trajectories',
    )
    assert_one_line_error(
        run_cli('run', '--config', _config(tmp_path, tmp_path / 'c3', n_sims=2), '--quiet'), '(the test split is empty)'
    )
    debug = run_cli(
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
    assert_one_line_error(run_cli('inspect', dm.directory), 'sim_000000.h5 is truncated')


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))


@pytest.mark.slow
def test_a_write_that_fails_with_efbig_is_an_error_not_a_crash(tmp_path):
    config = _config(tmp_path, tmp_path / 'cache')
    result = run_cli('generate', '--config', config, '--quiet', preexec_fn=_limit_file_size)
    assert_one_line_error(result, 'File too large')
    assert not list((tmp_path / 'cache').rglob('sim_*.h5')) and not list((tmp_path / 'cache').rglob('*.tmp'))


def _tiny(tmp_path, extra=''):
    config = tmp_path / 'c.yaml'
    config.write_text(
        f"scenario: {{name: burgers1d, resolution: [32], steps: 6, scheme: spectral, viscosity: 0.05}}\n"
        f"data: {{cache_dir: '{tmp_path / 'cache'}', n_sims: 6, split: [0.5, 0.17, 0.33]}}\n"
        "dataset: {n_targets: 2, batch_size: 8}\nmodel: {architecture: conv_net, filters: 4, layers: 1}\n"
        f"training: {{epochs: 1}}\nevaluation: {{min_test_sims: 2}}\noutput: '{tmp_path / 'run'}'\n{extra}"
    )
    return config


@pytest.mark.slow
def test_evaluate_never_overwrites_and_refuses_a_damaged_or_edited_checkpoint_in_one_line(tmp_path, capsys):
    """Issue #28.8 and #28.11: evaluate replaced RUN/evaluate and other runs' files; garbage weights gave tracebacks."""
    config = _tiny(tmp_path)
    assert cli.main(['run', '--config', str(config), '--quiet']) == 0
    run = tmp_path / 'run'
    assert cli.main(['evaluate', str(run), '--quiet']) == 0 and cli.main(['evaluate', str(run), '--quiet']) == 0
    assert (run / 'evaluate' / 'metrics.json').exists() and (run / 'evaluate-2' / 'metrics.json').exists()
    capsys.readouterr()
    err = _error(capsys, 'evaluate', str(run), '--quiet', '--output', str(run))
    assert f"--output {run} holds files" in err and err.count('\n') == 1
    edited = (run / 'config.yaml').read_text().replace('filters: 4', 'filters: 8')
    (run / 'config.yaml').write_text(edited)
    err = _error(capsys, 'evaluate', str(run), '--quiet')
    assert 'was written by another configuration: model.filters is 4 there, 8 here' in err and err.count('\n') == 1
    (run / 'config.yaml').write_text(edited.replace('filters: 8', 'filters: 4'))
    next((run / 'checkpoints' / 'best').glob('net-*.pth')).write_bytes(b'not a network')
    err = _error(capsys, 'evaluate', str(run), '--quiet')
    assert 'is damaged: its SHA-256 differs' in err and err.count('\n') == 1


def test_an_empty_index_range_names_the_flag(capsys):
    with pytest.raises(ValueError, match=r"--indices '5-3': the range '5-3' is empty"):
        cli.select_sims(10, indices='5-3')


def test_physical_parameters_are_validated_like_the_others(capsys):
    """Issue #28.13: viscosity -1 was cached, with velocities growing to 1.5e9."""
    err = _error(capsys, 'generate', '--config', str(ROOT / 'configs' / 'default.yaml'), 'scenario.viscosity=-1')
    assert 'scenario.viscosity: must be a finite number >= 0, got -1.0' in err and err.count('\n') == 1


def test_a_solver_that_cannot_run_on_the_training_backend_is_refused_before_anything_is_simulated(tmp_path, capsys):
    """Issue #28.14: 1D Burgers with scheme phiflow in physical mode printed a torch error and kept running."""
    config = _tiny(tmp_path)
    err = _error(capsys, 'run', '--config', str(config), 'training.mode=physical', 'scenario.scheme=phiflow')
    assert "training.mode: the solver of scenario 'burgers1d' cannot run on backend 'torch'" in err
    assert err.count('\n') == 1 and not (tmp_path / 'cache').exists() and not (tmp_path / 'run').exists()


def test_config_errors_come_before_the_config_dump_and_the_defaults_meet_their_own_test_minimum(tmp_path, capsys):
    """Issue #28.15: a truncated YAML gave 7 lines; run printed 80 lines of config before a config error; an empty
    YAML announced a saved config.yaml and saved nothing, since the built-in defaults failed min_test_sims."""
    truncated = tmp_path / 't.yaml'
    truncated.write_text('scenario: {name: burgers2d, resolution: [32, 32\n')
    err = _error(capsys, 'run', '--config', str(truncated))
    assert err.startswith(f'error: {truncated}: invalid YAML at line') and err.count('\n') == 1
    out = capsys.readouterr().out
    config = _tiny(tmp_path)
    err = _error(capsys, 'run', '--config', str(config), 'data.split=[0.8, 0.2, 0.0]')
    assert 'data.split: the test split has 0 sims' in err and 'resolved config' not in capsys.readouterr().out + out
    from phiml_data.config import parse_run_config
    from phiml_data.splits import split_sims

    defaults = parse_run_config({})
    test = split_sims(range(defaults.data.n_sims), defaults.data.split, defaults.data.split_seed)['test']
    assert len(test) >= defaults.evaluation.min_test_sims


@pytest.mark.slow
def test_ctrl_c_during_generate_is_one_line_saying_what_was_kept_and_exit_130(tmp_path):
    config = tmp_path / 'c.yaml'
    config.write_text(
        f"scenario: {{name: smoke, resolution: [32, 32], steps: 30}}\ndata: {{cache_dir: '{tmp_path}', n_sims: 50}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, '-m', 'phiml_data', 'generate', '--config', str(config), '--quiet', '--batch-size', '1'],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        # a suite started in the background (`cmd &`) inherits an ignored SIGINT: give the child Ctrl-C back
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    import time

    directory = None
    for _ in range(600):  # until the first sim is written
        time.sleep(0.1)
        found = list(tmp_path.glob('smoke-*/sim_000000.h5'))
        if found:
            directory = found[0].parent
            break
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [
        'interrupted: every sim written so far is complete and recorded; rerun generate to simulate the rest'
    ]
    assert directory is not None and (directory / 'sim_000000.h5').exists()
