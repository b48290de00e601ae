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
    assert all(
        f'python -m phiml_data {c}' in usage for c in ('generate', 'inspect', 'migrate', 'import', 'export', 'run')
    )


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
