"""Generation on executors: a real Dask LocalCluster, concurrent writers, workers that die."""

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

from conftest import ROOT
from phiml_data import Burgers2D, DataManager

pytestmark = pytest.mark.slow

SCENARIO = Burgers2D(resolution=16, steps=6)


def cache_bytes(dm):
    return {p.name: p.read_bytes() for p in sorted(dm.directory.glob('sim_*.h5'))}


def test_dask_cluster_with_two_threads_per_worker_is_bit_identical_to_local(tmp_path):
    distributed = pytest.importorskip('distributed')
    local = DataManager(tmp_path / 'local', SCENARIO)
    local.generate(6, progress=False)
    remote = DataManager(tmp_path / 'cluster', SCENARIO)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, host='127.0.0.1', dashboard_address=':0'
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert remote.generate(6, executor=client, batch_size=1, progress=False) == list(range(6))
        config = tmp_path / 'c.yaml'
        config.write_text(
            f"scenario: {{name: burgers1d, resolution: [32], steps: 3}}\ndata: {{cache_dir: '{tmp_path / 'cli'}', n_sims: 3}}\n"
        )
        cli = subprocess.run(
            [
                sys.executable,
                '-m',
                'phiml_data',
                'generate',
                '--config',
                str(config),
                '--scheduler',
                cluster.scheduler_address,
                '--quiet',
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert cli.returncode == 0 and 'sims: 3' in cli.stdout, cli.stderr
    assert cache_bytes(local) == cache_bytes(remote) and len(cache_bytes(local)) == 6  # bit-identical files
    assert local.manifest() == remote.manifest()


_WRITER = """
import sys
from phiml_data import DataManager, Burgers2D
print(DataManager(sys.argv[1], Burgers2D(resolution=16, steps=6)).generate(12, batch_size=2, progress=False))
"""

_READER = """
import sys, time
from phiml_data import DataManager, Burgers2D
dm = DataManager(sys.argv[1], Burgers2D(resolution=16, steps=6))
seen = set()
deadline = time.time() + 120
while len(seen) < 12 and time.time() < deadline:
    for i in dm.cached_indices():
        sim = dm.load_phiml_cache(i)  # raises on anything incomplete
        assert sim['velocity'].shape.get_size('time') == 7
        seen.add(i)
print(len(seen))
"""


def test_two_generators_and_a_reader_at_once(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, '-c', _WRITER, str(tmp_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    reader = subprocess.Popen(
        [sys.executable, '-c', _READER, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    written = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        written.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(written[0] + written[1]) == list(range(12))  # each sim written by exactly one of the two
    out, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err
    assert out.strip() == '12'
    dm = DataManager(tmp_path, SCENARIO)
    assert dm.cached_indices() == list(range(12))
    assert not list(dm.directory.glob('*.tmp'))  # nothing half-written left behind
    fresh = DataManager(tmp_path / 'fresh', SCENARIO)
    fresh.generate(12, progress=False)
    assert fresh.manifest() == dm.manifest()  # every sim complete, written once with the same content
    json.loads((dm.directory / 'manifest.json').read_text())


def _die_in_worker():
    """Executor initializer: the first step simulated in this worker kills the process (SIGKILL)."""
    import phiml_data.scenarios as scenarios

    def step(self, state):
        os.kill(os.getpid(), signal.SIGKILL)

    scenarios.Burgers2D.step = step


def test_killed_worker_leaves_nothing_partial_and_rerun_completes(tmp_path):
    dm = DataManager(tmp_path, SCENARIO)
    with ProcessPoolExecutor(1, initializer=_die_in_worker) as pool:
        with pytest.raises(
            RuntimeError,
            match=r'sims failed; nothing partial was written\. Fix the cause below, then rerun generate\(\)',
        ) as err:
            dm.generate(4, executor=pool, batch_size=2, progress=False)
    assert 'sims [0, 1]' in str(err.value)
    assert not list(dm.directory.glob('sim_*')) and not list(dm.directory.glob('*.tmp'))
    assert dm.generate(4, progress=False) == [0, 1, 2, 3]
    assert dm.cached_indices() == [0, 1, 2, 3]
