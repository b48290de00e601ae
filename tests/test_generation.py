"""Generation and repair (`phiml_data.generation`): identical bytes from any executor, repair, retries, SLURM arrays, claims."""

import errno
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import h5py
import numpy as np
import pytest
from phiml.backend import default_backend

from conftest import ROOT, SMALL, arrays
from phiml_data import Burgers2D, CacheError, DataManager, simulate


def cache_bytes(dm):
    return {p.name: p.read_bytes() for p in sorted(dm.directory.glob('sim_*'))}


def _chdir_elsewhere(path):
    os.chdir(path)


def _other_versions():
    import phiml_data.keys as keys

    real = keys.library_versions
    keys.library_versions = lambda: {**real(), 'phiml': '1.15.0'}


@pytest.mark.slow
def test_threads_and_processes_write_bit_identical_files(tmp_path):
    local = DataManager(tmp_path / 'local', SMALL)
    local.generate(12, progress=False)
    rng_state, backend = np.random.get_state()[1].copy(), default_backend()
    for name, pool in (('threads', ThreadPoolExecutor(4)), ('processes', ProcessPoolExecutor(2))):
        dm = DataManager(tmp_path / name, SMALL)
        with pool:
            dm.generate(12, executor=pool, batch_size=1, progress=False)
        assert cache_bytes(dm) == cache_bytes(local), name
    np.testing.assert_array_equal(np.random.get_state()[1], rng_state)  # no process-wide RNG was seeded
    assert default_backend() is backend


def test_a_sim_is_the_same_alone_in_a_batch_and_in_another_thread():
    alone = simulate(SMALL, [5])[0]['velocity']
    batched = simulate(SMALL, [3, 4, 5])[2]['velocity']
    with ThreadPoolExecutor(3) as pool:
        threaded = list(pool.map(lambda i: simulate(SMALL, [i])[0]['velocity'], [5, 5, 5]))
    for t in [batched] + threaded:
        np.testing.assert_array_equal(arrays(t), arrays(alone))
    assert not np.array_equal(arrays(simulate(SMALL, [4])[0]['velocity']), arrays(alone))


@pytest.mark.slow
def test_relative_cache_dir_travels_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'elsewhere').mkdir()
    dm = DataManager('cache', SMALL)
    assert dm.directory.is_absolute()
    with ProcessPoolExecutor(1, initializer=_chdir_elsewhere, initargs=(str(tmp_path / 'elsewhere'),)) as pool:
        assert dm.generate(2, executor=pool, progress=False) == [0, 1]
    assert not (tmp_path / 'elsewhere' / 'cache').exists() and dm.cached_indices() == [0, 1]


@pytest.mark.slow
def test_worker_with_other_library_versions_refuses_and_a_rerun_completes(tmp_path):
    dm = DataManager(tmp_path, SMALL)
    with ProcessPoolExecutor(1, initializer=_other_versions) as pool:
        with pytest.raises(RuntimeError, match=r"versions.phiml: '1.15.0' \(worker\) vs '1.16.1' \(client\)"):
            dm.generate(2, executor=pool, progress=False)
    assert not list(dm.directory.glob('sim_*'))
    assert dm.generate(2, progress=False) == [0, 1]


def test_generate_repairs_missing_truncated_corrupted_unopenable_files_and_temporaries(cache):
    before = cache_bytes(cache)
    cache.path(0).unlink()
    assert cache.cached_indices() == [1, 2]  # never lists a file that is gone
    with h5py.File(cache.path(1), 'r+') as f:
        del f.attrs['metadata']
    (cache.directory / '.sim_000002.h5.abc123.tmp').write_bytes(b'half')
    assert cache.generate(3, progress=False) == [0, 1]
    assert not list(cache.directory.glob('*.tmp'))
    with h5py.File(cache.path(2), 'r+') as f:
        f['root[velocity]'][6, 0, 0, 1] *= 2
    assert cache.generate(3, progress=False) == []  # the cheap check reads no values
    assert cache.generate(3, progress=False, verify=True) == [2]
    assert cache_bytes(cache) == before
    quarantined = sorted(p.name for p in (cache.directory / 'quarantine').iterdir())
    assert len(quarantined) == 4 and any(
        'frame 6 fails its xxh3-64 checksum' in (cache.directory / 'quarantine' / q).read_text()
        for q in quarantined
        if q.endswith('.txt')
    )


def test_imported_sims_that_break_are_quarantined_not_silently_resimulated(cache):
    data = cache.load_phiml_cache(0)
    cache.save_phiml_cache(5, dict(data))
    with h5py.File(cache.path(5), 'r+') as f:
        f['root[velocity]'][0, 0, 0, 0] += 1
    with pytest.raises(CacheError, match=r'Sims \[5\] were imported, not simulated, and failed verification'):
        cache.generate([5], progress=False, verify=True)
    assert 5 not in cache.cached_indices()


@dataclass(frozen=True)
class FailsWhileMarked(Burgers2D):
    marker: str = ''

    def step(self, state):
        if os.path.exists(self.marker):
            raise RuntimeError('planned failure')
        return super().step(state)


@pytest.mark.slow
def test_a_failed_generate_retries_with_the_same_dask_client(tmp_path):
    distributed = pytest.importorskip('distributed')
    marker = tmp_path / 'marker'
    marker.write_text('fail')
    failing = DataManager(tmp_path / 'retry', FailsWhileMarked(resolution=16, steps=2, marker=str(marker)))
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=':0') as cluster,
        distributed.Client(cluster) as client,
    ):
        with pytest.raises(RuntimeError, match='planned failure'):
            failing.generate(2, executor=client, progress=False)
        marker.unlink()
        assert failing.generate(2, executor=client, progress=False) == [0, 1]  # not the cached failure


@pytest.mark.slow
def test_slurm_array_tasks_give_the_cache_of_one_local_run(tmp_path):
    config = tmp_path / 'c.yaml'
    config.write_text(
        f"scenario: {{name: burgers2d, resolution: [16, 16], steps: 6}}\ndata: {{cache_dir: '{tmp_path / 'array'}', n_sims: 10}}\n"
    )
    tasks = [
        subprocess.Popen(
            [sys.executable, '-m', 'phiml_data', 'generate', '--config', str(config), '--quiet', '--shard', f'{i}/3'],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]  # the same command in every array task, running at once
    for task in tasks:
        _, err = task.communicate(timeout=300)
        assert task.returncode == 0, err
    array = DataManager(tmp_path / 'array', SMALL)
    local = DataManager(tmp_path / 'local', SMALL)
    local.generate(10, progress=False)
    assert cache_bytes(array) == cache_bytes(local) and len(cache_bytes(local)) == 10
    assert array.manifest() == {i: {**e} for i, e in local.manifest().items()}


def test_no_lock_temporary_or_entry_files_stay_behind(tmp_path):
    dm = DataManager(tmp_path, SMALL)
    dm.generate(5, batch_size=2, progress=False)
    names = sorted(p.name for p in dm.directory.iterdir())
    assert names == ['config.json', 'manifest.d', 'manifest.json', 'manifest.lock'] + [
        f'sim_{i:06d}.h5' for i in range(5)
    ]
    assert not list((dm.directory / 'manifest.d').iterdir())  # compacted into manifest.json at the end of generate


def test_a_filesystem_without_flock_is_named_and_array_mode_still_works(tmp_path, monkeypatch, capsys):
    import fcntl

    def no_flock(*args):
        raise OSError(errno.ENOLCK, 'No locks available')

    monkeypatch.setattr(fcntl, 'flock', no_flock)
    dm = DataManager(tmp_path, SMALL)
    with pytest.raises(RuntimeError, match=r'does not support flock \(No locks available\).*--shard I/N'):
        dm.generate(2, progress=False)
    assert dm.generate([0, 1], claims=False, progress=False) == [0, 1]
    assert dm.cached_indices() == [0, 1] and len(list((dm.directory / 'manifest.d').iterdir())) == 2  # not compacted
    from phiml_data.cli import main

    assert main(['inspect', str(dm.directory)]) == 0 and 'sims: 2,' in capsys.readouterr().out  # inspect sees them too
