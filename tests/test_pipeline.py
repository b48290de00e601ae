"""The main job end to end on a tiny config: every output is written, a rerun reuses the cache."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_run_writes_all_outputs_and_reuses_the_cache(tmp_path):
    config = tmp_path / 'tiny.yaml'
    config.write_text(f"""
scenario: {{name: burgers2d, resolution: [16, 16], steps: 8}}
data: {{cache_dir: '{tmp_path / 'cache'}', n_sims: 6, split: [0.5, 0.25, 0.25]}}
dataset: {{n_targets: 2, batch_size: 8}}
model: {{architecture: conv_net, filters: 8, layers: 2}}
training: {{epochs: 5}}
evaluation: {{min_test_sims: 2}}
output: '{tmp_path / 'out'}'
""")
    cmd = [
        sys.executable,
        '-m',
        'phiml_data',
        'run',
        '--config',
        str(config),
        '--quiet',
        'training.epochs=2',
        'dataset.augment=[flip]',
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    assert 'resolved config' in first.stdout and 'epochs: 2' in first.stdout
    assert len(json.loads((tmp_path / 'out' / 'history.json').read_text())) == 2  # the override, not the file's 5
    out = tmp_path / 'out'
    for name in (
        'config.yaml',
        'splits.json',
        'history.json',
        'metrics.json',
        'evaluation.csv',
        'loss.png',
        'errors.png',
        'rollout_velocity.png',
    ):
        assert (out / name).exists(), name
    assert (out / 'checkpoints' / 'best' / 'state.json').exists() and (
        out / 'checkpoints' / 'last' / 'state.json'
    ).exists()
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['rollout_steps'] == 8 and set(metrics['summary']) == {'velocity'}
    assert metrics['versions']['phiml'] == '1.16.1' and 'numpy' in metrics['versions']  # what the numbers came from
    assert 'model/persistence' in first.stdout
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / 'cache').rglob('sim_*.h5')}
    second = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert second.returncode == 0 and mtimes == {
        p: p.stat().st_mtime_ns for p in (tmp_path / 'cache').rglob('sim_*.h5')
    }
    assert (tmp_path / 'out-2' / 'metrics.json').exists() and json.loads((out / 'metrics.json').read_text()) == metrics
    bad = tmp_path / 'bad.yaml'
    bad.write_text('training: {epochs: -1}\n')
    result = subprocess.run(
        [sys.executable, '-m', 'phiml_data', 'run', '--config', str(bad)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 2 and 'bad.yaml: training: need epochs >= 0' in result.stderr, result.stderr


def test_overrides_are_validated_like_the_config_file(tmp_path):
    bad = subprocess.run(
        [sys.executable, '-m', 'phiml_data', 'run', '--config', 'configs/default.yaml', 'dataset.batchsize=3'],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "dataset.batchsize: unknown key; valid keys: [" in bad.stderr
    bad = subprocess.run(
        [sys.executable, '-m', 'phiml_data', 'generate', 'training.epochs'], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 2 and "override 'training.epochs': expected KEY=VALUE" in bad.stderr
