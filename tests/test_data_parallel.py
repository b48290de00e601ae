"""Issue #10: data-parallel training on torch.distributed (gloo, CPU) equals one process on the global batch."""

import json
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from phiml_data import Burgers2D, DataManager

pytestmark = pytest.mark.slow
pytest.importorskip('torch')

_RANK = """
import json, sys
import numpy as np
import torch.distributed as dist
from phiml_data import DataManager, Burgers2D, PhiMLDataset
from phiml_data.trainer import Trainer, ModelConfig, TrainConfig
cache, rank, world, port, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
if world > 1:
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world)
dm = DataManager(cache, Burgers2D(resolution=8, steps=8))
train = PhiMLDataset(dm, [0, 1], n_targets=1, batch_size=8 // world, shard=(rank, world), prefetch=0)
config = TrainConfig(epochs=2, threads=1, learning_rate=1e-2, progress=False)
trainer = Trainer(train, None, ModelConfig('conv_net', filters=4, layers=1), config)
history = trainer.fit()
np.save(out, np.concatenate([p.detach().numpy().ravel() for p in trainer.net.parameters()]))
print(json.dumps([r['train_loss'] for r in history]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_end_with_identical_weights_and_the_single_process_loss(tmp_path):
    DataManager(tmp_path / 'cache', Burgers2D(resolution=8, steps=8)).generate(2, progress=False)
    port = free_port()
    ranks = [
        subprocess.Popen(
            [sys.executable, '-c', _RANK, str(tmp_path / 'cache'), str(r), '2', str(port), str(tmp_path / f'w{r}.npy')],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    losses = []
    for p in ranks:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        losses.append(json.loads(out.strip().splitlines()[-1]))
    single = subprocess.run(
        [sys.executable, '-c', _RANK, str(tmp_path / 'cache'), '0', '1', '0', str(tmp_path / 'single.npy')],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    w0, w1, ws = (np.load(tmp_path / f) for f in ('w0.npy', 'w1.npy', 'single.npy'))
    np.testing.assert_array_equal(w0, w1)  # identical weights on both ranks
    np.testing.assert_allclose(w0, ws, rtol=1e-4, atol=1e-6)  # the step one process takes on the global batch
    assert losses[0] == losses[1]  # the logged loss is the mean over the ranks
    np.testing.assert_allclose(losses[0], json.loads(single.stdout.strip().splitlines()[-1]), rtol=1e-5)


def test_run_under_torchrun_trains_on_two_ranks_and_rank_0_writes(tmp_path):
    config = tmp_path / 'tiny.yaml'
    config.write_text(
        f"""
scenario: {{name: burgers2d, resolution: [16, 16], steps: 6}}
data: {{cache_dir: '{tmp_path / 'cache'}', n_sims: 6, split: [0.5, 0.25, 0.25]}}
dataset: {{n_targets: 2, batch_size: 4}}
model: {{architecture: conv_net, filters: 4, layers: 1}}
training: {{epochs: 1, threads: 1}}
evaluation: {{min_test_sims: 2}}
output: '{tmp_path / 'out'}'
"""
    )
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc-per-node', '2', '--master-port', str(free_port())]
    result = subprocess.run(
        [*cmd, '-m', 'phiml_data', 'run', '--config', str(config), '--quiet'], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('model/persistence') == 1  # rank 0 evaluates and reports
    # 3 train sims x 5 windows = 15: 7 per rank (one waits for another epoch), in batches of 4 and 3: 2 steps per rank
    assert json.loads((tmp_path / 'out' / 'metrics.json').read_text())['train_steps'] == 2
