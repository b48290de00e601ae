"""The cache directory (`phiml_data.cache`): every read verified (lazy like memory), foreign files refused, read-only shared caches."""

import os
import pickle
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import ROOT, SMALL, arrays
from phiml_data import Burgers2D, CacheError, DataManager, PhiMLDataset, SmokePlume
from phiml_data.splits import record_split


def lazy_epoch(dm):
    """Reads every window of a fresh lazy dataset."""
    ds = PhiMLDataset(DataManager(dm.directory.parent, dm.scenario), mode='lazy', n_targets=2, normalize=False)
    for _ in ds.iterate_batches(8):
        pass


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


def test_config_json_of_another_configuration_names_each_difference(cache):
    text = (cache.directory / 'config.json').read_text().replace('"viscosity": 0.01', '"viscosity": 0.5')
    (cache.directory / 'config.json').write_text(text)
    with pytest.raises(
        CacheError,
        match=r'config.json describes another configuration.*\n  params.viscosity: 0.5 \(found\) vs 0.01 \(expected\)',
    ):
        cache.generate(4, progress=False)


def test_reads_into_a_wrong_buffer_are_refused(cache):
    with cache.cache.open_sim(0) as sim:
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


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


@pytest.mark.slow
def test_npz_cache_is_not_unpickled_without_an_explicit_allow(tmp_path):
    dm = DataManager(tmp_path, SMALL, 'npz')
    dm.generate(1, progress=False)
    with pytest.raises(CacheError, match=r"format 'npz', whose loader unpickles.*allow_pickle=True"):
        dm.load_phiml_cache(0)
    marker = tmp_path / 'pwned'
    np.savez(dm.path(0), tree=np.array([_Exploit(marker)], dtype=object))
    result = subprocess.run(
        [sys.executable, '-m', 'phiml_data', 'inspect', str(dm.directory)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 2 and '--allow-pickle' in result.stderr and not marker.exists()
    assert DataManager(tmp_path, SMALL, 'npz', allow_pickle=False).cached_indices() == [0]
    assert pickle  # the exploit class above is what a crafted file would carry


def test_lazy_reads_work_for_every_format(tmp_path):
    npz = DataManager(tmp_path, SMALL, 'npz', allow_pickle=True)
    npz.generate(2, progress=False)
    lazy = list(PhiMLDataset(npz, mode='lazy', n_targets=2, normalize=False).iterate_batches(5))
    memory = list(PhiMLDataset(npz, mode='memory', n_targets=2, normalize=False).iterate_batches(5))
    assert len(lazy) == len(memory)
    for a, b in zip(lazy, memory):
        np.testing.assert_array_equal(arrays(a['targets']), arrays(b['targets']))


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


def test_write_all_never_deletes_a_sim_cached_before(cache):
    """Issue #28.7: the rollback of a failed batch unlinked every file it wrote, the replaced file of a cached sim too."""
    before = arrays(cache.load_phiml_cache(0)['velocity'])
    good = {'velocity': cache.load_phiml_cache(1)['velocity']}
    bad = {'velocity': good['velocity'] * float('nan')}
    with pytest.raises(ValueError, match='NaN or Inf'):
        cache.cache.write_all([(0, good), (5, good), (6, bad)], origin='saved')
    np.testing.assert_array_equal(arrays(cache.load_phiml_cache(0)['velocity']), before)  # still the old sim 0
    assert not cache.path(5).exists() and cache.cached_indices() == [0, 1, 2]
    assert not [p for p in cache.directory.iterdir() if p.name.endswith('.tmp')]  # no staged file left
    cache.cache.write_all([(0, good), (5, good)], origin='saved')  # all valid: replaced and added together
    np.testing.assert_array_equal(arrays(cache.load_phiml_cache(0)['velocity']), arrays(good['velocity']))
    assert cache.cached_indices() == [0, 1, 2, 5]
