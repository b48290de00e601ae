"""Issue #9: every read, write, import and worker either yields exactly the right simulation or fails loudly."""

import os
import pickle
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import h5py
import numpy as np
import pytest
from phiml.backend import default_backend

from conftest import ROOT, arrays
from phiml_data import Burgers2D, CacheError, DataManager, PhiMLDataset, SmokePlume, scenario_from_scene, simulate
from phiml_data.importers import import_scene
from phiml_data.keys import cache_key
from phiml_data.scenarios import FieldSpec

SCENARIO = Burgers2D(resolution=16, steps=6)


def cache_bytes(dm):
    return {p.name: p.read_bytes() for p in sorted(dm.directory.glob('sim_*'))}


@pytest.fixture
def cache(small_cache):
    return small_cache


def lazy_epoch(dm):
    """Reads every window of a fresh lazy dataset."""
    ds = PhiMLDataset(DataManager(dm.directory.parent, dm.scenario), mode='lazy', n_targets=2, normalize=False)
    for _ in ds.iterate_batches(8):
        pass


# --- 1. lazy reads are verified like memory reads ---


def test_lazy_read_of_altered_values_fails_naming_file_sim_field_and_frame(cache):
    with h5py.File(cache.path(1), 'r+') as f:
        f['root[velocity]'][4, 3, 3, 0] += 1e-3  # h5py rewrites the chunk: only our own frame checksums notice
    with pytest.raises(
        CacheError, match=r"sim_000001.h5 \(sim 1\): field 'velocity' frame 4 fails its xxh3-64 checksum check"
    ):
        lazy_epoch(cache)


def test_lazy_read_of_a_file_from_another_sim_or_configuration_fails(cache, tmp_path):
    cache.path(1).write_bytes(cache.path(2).read_bytes())
    with pytest.raises(CacheError, match=r'holds sim 2, not sim 1'):
        lazy_epoch(cache)
    other = DataManager(tmp_path / 'other', Burgers2D(resolution=16, steps=6, viscosity=0.02))
    other.generate([1], progress=False)
    cache.path(1).write_bytes(other.path(1).read_bytes())
    with pytest.raises(
        CacheError, match=r'another configuration: params.viscosity: 0.02 \(found\) vs 0.01 \(expected\)'
    ):
        lazy_epoch(cache)


def test_lazy_read_of_a_file_of_another_resolution_fails(cache, tmp_path):
    big = DataManager(tmp_path / 'big', Burgers2D(resolution=24, steps=6))
    big.generate([1], progress=False)
    cache.path(1).write_bytes(big.path(1).read_bytes())
    with pytest.raises(
        CacheError, match=r"field 'velocity' has shape \(time:b=7,x:s=24,y:s=24.*expected \(time:b=7,x:s=16,y:s=16"
    ):
        lazy_epoch(cache)


def test_lazy_read_of_a_file_missing_a_field_names_the_file(tmp_path):
    dm = DataManager(tmp_path, SmokePlume(resolution=16, steps=2))
    dm.generate(1, progress=False)
    with h5py.File(dm.path(0), 'r+') as f:
        del f['root[density]']
    with pytest.raises(
        CacheError, match=r"sim_000000.h5 \(sim 0\) fails verification:\n  fields \['inflow', 'velocity'\]"
    ):
        lazy_epoch(dm)


def test_old_format_version_names_the_way_forward(cache):
    with h5py.File(cache.path(0), 'r+') as f:
        f.attrs['format_version'] = 1
    with pytest.raises(CacheError, match=r'format version 1; this phiml_data reads version 2\. Regenerate the cache'):
        cache.load_phiml_cache(0)


def test_every_served_window_equals_the_in_memory_window(cache):
    memory = PhiMLDataset(cache, mode='memory', n_targets=2, normalize=False)
    lazy = PhiMLDataset(cache, mode='lazy', n_targets=2, normalize=False, prefetch=2)
    pairs = list(zip(memory.iterate_batches(5, epoch=1), lazy.iterate_batches(5, epoch=1), strict=True))
    assert pairs
    for a, b in pairs:
        np.testing.assert_array_equal(arrays(a['targets']), arrays(b['targets']))
        np.testing.assert_array_equal(arrays(a['initial_state']), arrays(b['initial_state']))


# --- 2. generation is a pure function of (scenario, sim index) ---


@pytest.mark.slow
def test_threads_and_processes_write_bit_identical_files(tmp_path):
    local = DataManager(tmp_path / 'local', SCENARIO)
    local.generate(12, progress=False)
    rng_state, backend = np.random.get_state()[1].copy(), default_backend()
    for name, pool in (('threads', ThreadPoolExecutor(4)), ('processes', ProcessPoolExecutor(2))):
        dm = DataManager(tmp_path / name, SCENARIO)
        with pool:
            dm.generate(12, executor=pool, batch_size=1, progress=False)
        assert cache_bytes(dm) == cache_bytes(local), name
    np.testing.assert_array_equal(np.random.get_state()[1], rng_state)  # no process-wide RNG was seeded
    assert default_backend() is backend


def test_a_sim_is_the_same_alone_in_a_batch_and_in_another_thread():
    alone = simulate(SCENARIO, [5])[0]['velocity']
    batched = simulate(SCENARIO, [3, 4, 5])[2]['velocity']
    with ThreadPoolExecutor(3) as pool:
        threaded = list(pool.map(lambda i: simulate(SCENARIO, [i])[0]['velocity'], [5, 5, 5]))
    for t in [batched] + threaded:
        np.testing.assert_array_equal(arrays(t), arrays(alone))
    assert not np.array_equal(arrays(simulate(SCENARIO, [4])[0]['velocity']), arrays(alone))


# --- 3. the key covers everything that determines the data ---


@dataclass(frozen=True)
class Heated(Burgers2D):
    """Another field set."""

    fields: ClassVar[dict] = {**Burgers2D.fields, 'temperature': FieldSpec()}


@dataclass(frozen=True)
class Faster(Burgers2D):
    """Changed physics, same parameters."""

    def step(self, state):
        return super().step(super().step(state))


@dataclass(frozen=True)
class Bumped(Burgers2D):
    version: ClassVar[int] = 2


def test_cache_key_covers_class_fields_code_and_version():
    keys = {
        cache_key(s)
        for s in (
            SCENARIO,
            Heated(resolution=16, steps=6),
            Faster(resolution=16, steps=6),
            Bumped(resolution=16, steps=6),
        )
    }
    assert len(keys) == 4
    assert SCENARIO.identity()['class'] == 'phiml_data.scenarios.burgers.Burgers2D'


def test_config_json_of_another_configuration_names_each_difference(cache):
    text = (cache.directory / 'config.json').read_text().replace('"viscosity": 0.01', '"viscosity": 0.5')
    (cache.directory / 'config.json').write_text(text)
    with pytest.raises(
        CacheError,
        match=r'config.json describes another configuration.*\n  params.viscosity: 0.5 \(found\) vs 0.01 \(expected\)',
    ):
        cache.generate(4, progress=False)


# --- 4. imports and migration trust the data, not the scenario ---


def _scene(path, scenario, frames, velocity_grid=None, dt=None):
    from phi.field import Scene

    scene = Scene.create(str(path), copy_calling_script=False)
    if dt is not None:
        scene.put_property('dt', dt)
    state = scenario.initial_state(0)
    for frame in range(frames):
        v = velocity_grid(state['velocity']) if velocity_grid else state['velocity']
        scene.write({**state, 'velocity': v}, frame=frame)
    return scene.path


def test_scene_import_lists_every_difference_and_can_build_the_scenario(tmp_path):
    target = DataManager(tmp_path / 'cache', Burgers2D(resolution=(16, 12), steps=4, length=4.0))
    path = _scene(tmp_path / 's1', Burgers2D(resolution=8, steps=9), frames=10, dt=0.1)
    with pytest.raises(ValueError) as err:
        import_scene(target, path, 0)
    text = str(err.value)
    for fragment in (
        '10 frames; scenario has steps=4, i.e. 5 frames',
        'dt=0.1; scenario has dt=0.05',
        "field 'velocity': bounds {'x': [0.0, 6.28318",
        "resolution {'x': 8, 'y': 8}; scenario has {'x': 16, 'y': 12}",
    ):
        assert fragment in text, fragment
    assert target.cached_indices() == []
    scenario = scenario_from_scene(path, Burgers2D)
    assert (scenario.resolution, scenario.steps, scenario.dt) == ((8, 8), 9, 0.1)
    import_scene(DataManager(tmp_path / 'cache', scenario), path, 0)


def test_scene_with_centred_velocity_is_not_recorded_as_staggered(tmp_path):
    smoke = SmokePlume(resolution=16, steps=1)
    path = _scene(tmp_path / 's', smoke, frames=2, velocity_grid=lambda v: v.at_centers(), dt=smoke.dt)
    with pytest.raises(ValueError, match=r"field 'velocity': grid centered; scenario has staggered"):
        import_scene(DataManager(tmp_path / 'cache', smoke), path, 0)
    with pytest.raises(ValueError, match=r"records no dt"):
        import_scene(DataManager(tmp_path / 'cache', smoke), _scene(tmp_path / 'nodt', smoke, frames=2), 0)


def test_migrate_refuses_a_legacy_file_of_another_size_naming_the_file(tmp_path):
    torch = pytest.importorskip('torch')
    legacy = tmp_path / 'legacy' / 'sim_000000.pt'
    legacy.parent.mkdir()
    torch.save({'tensor_data': {'velocity': torch.zeros(2, 11, 16, 16)}, 'metadata': {'dt': 0.1}}, legacy)
    from phiml_data.legacy import migrate_legacy

    dm = DataManager(tmp_path / 'cache', Burgers2D(resolution=32, steps=40))
    with pytest.raises(ValueError) as err:
        migrate_legacy(legacy.parent, dm, progress=False)
    text = str(err.value)
    assert f'Legacy file {legacy} refused' in text and 'dt=0.1; scenario has dt=0.05' in text
    dm2 = DataManager(tmp_path / 'cache2', Burgers2D(resolution=32, steps=40))
    torch.save({'tensor_data': {'velocity': torch.zeros(2, 11, 16, 16)}}, legacy)
    with pytest.raises(
        ValueError, match=r"(?s)refused.*has shape \(time:b=11,x:s=16,y:s=16.*needs \(time:b=41,x:s=32,y:s=32"
    ):
        migrate_legacy(legacy.parent, dm2, progress=False)
    assert dm.cached_indices() == dm2.cached_indices() == []


# --- 5. relative cache_dir with workers elsewhere; 6. workers with other versions ---


def _chdir_elsewhere(path):
    os.chdir(path)


@pytest.mark.slow
def test_relative_cache_dir_travels_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'elsewhere').mkdir()
    dm = DataManager('cache', SCENARIO)
    assert dm.directory.is_absolute()
    with ProcessPoolExecutor(1, initializer=_chdir_elsewhere, initargs=(str(tmp_path / 'elsewhere'),)) as pool:
        assert dm.generate(2, executor=pool, progress=False) == [0, 1]
    assert not (tmp_path / 'elsewhere' / 'cache').exists() and dm.cached_indices() == [0, 1]


def _other_versions():
    import phiml_data.keys as keys

    real = keys.library_versions
    keys.library_versions = lambda: {**real(), 'phiml': '1.15.0'}


@pytest.mark.slow
def test_worker_with_other_library_versions_refuses_and_a_rerun_completes(tmp_path):
    dm = DataManager(tmp_path, SCENARIO)
    with ProcessPoolExecutor(1, initializer=_other_versions) as pool:
        with pytest.raises(RuntimeError, match=r"versions.phiml: '1.15.0' \(worker\) vs '1.16.1' \(client\)"):
            dm.generate(2, executor=pool, progress=False)
    assert not list(dm.directory.glob('sim_*'))
    assert dm.generate(2, progress=False) == [0, 1]


# --- generate() repairs what it finds broken ---


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


# --- Dask: retries with the same client (threads per worker: tests/test_distributed.py) ---


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


# --- nothing is unpickled unless the caller says so for that call ---


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


@pytest.mark.slow
def test_npz_cache_is_not_unpickled_without_an_explicit_allow(tmp_path):
    dm = DataManager(tmp_path, SCENARIO, 'npz')
    dm.generate(1, progress=False)
    with pytest.raises(CacheError, match=r"format 'npz', whose loader unpickles.*allow_pickle=True"):
        dm.load_phiml_cache(0)
    marker = tmp_path / 'pwned'
    np.savez(dm.path(0), tree=np.array([_Exploit(marker)], dtype=object))
    result = subprocess.run(
        [sys.executable, '-m', 'phiml_data', 'inspect', str(dm.directory)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 2 and '--allow-pickle' in result.stderr and not marker.exists()
    assert DataManager(tmp_path, SCENARIO, 'npz', allow_pickle=False).cached_indices() == [0]
    assert pickle  # the exploit class above is what a crafted file would carry


def test_reads_into_a_wrong_buffer_are_refused(cache):
    with cache.open_sim(0) as sim:
        good = np.empty((3, 16, 16, 2), np.float32)
        np.testing.assert_array_equal(
            sim.read('velocity', 2, 5, out=good), cache.load_phiml_cache(0)['velocity'].numpy('time,x,y,vector')[2:5]
        )
        for bad in (
            np.empty((4, 16, 16, 2), np.float32),
            np.empty((3, 16, 16, 2), np.float64),
            np.empty((3, 16, 2, 16), np.float32).transpose(0, 1, 3, 2),
        ):
            with pytest.raises(ValueError, match='out must be a C-contiguous float32 array of shape'):
                sim.read('velocity', 2, 5, out=bad)
