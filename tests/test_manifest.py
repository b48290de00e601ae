"""The manifest (`phiml_data.manifest`): malformed entries and stray files never break the rest of the cache."""

import json
import os

import pytest

from conftest import SMALL
from phiml_data import Burgers2D, DataManager
from phiml_data.formats import CacheError

BAD_ENTRIES = {
    'sim_000001.json': '[]',
    'sim_000002.json': 'null',
    'sim_000003.json': '{}',
    'sim_000004.json': '{"file": "../../outside.h5", "bytes": 1, "origin": "saved", "fields": {}}',
    'sim_000001 (copy).json': '{}',
}


@pytest.fixture
def cache(tmp_path):
    from phiml_data import DataManager

    dm = DataManager(tmp_path / 'cache', Burgers2D(resolution=16, steps=3))
    dm.generate(6, progress=False)
    return dm


@pytest.mark.parametrize('name', sorted(BAD_ENTRIES))
def test_a_malformed_entry_is_named_and_the_rest_of_the_cache_works(cache, name):
    (cache.directory / 'manifest.d').mkdir(exist_ok=True)
    bad = cache.directory / 'manifest.d' / name
    bad.write_text(BAD_ENTRIES[name])
    sim = int(name[4:10])
    stray = ' ' in name
    assert cache.cached_indices() == ([0, 1, 2, 3, 4, 5] if stray else sorted({0, 1, 2, 3, 4, 5} - {sim}))
    assert cache.load_phiml_cache(0)['velocity'].shape.get_size('time') == 4  # other sims read as before
    problems = cache.cache.manifest_store.problems()
    assert list(problems) == [bad] and (stray or problems[bad][0] == sim)
    if not stray:
        with pytest.raises(CacheError, match=rf'Sim {sim} is not cached .*manifest entry {bad} is malformed'):
            cache.load_phiml_cache(sim)
    with pytest.warns(UserWarning, match='Malformed manifest entry'):
        assert cache.generate(6, progress=False) == []  # the sim's file is checked and adopted again
    assert cache.cached_indices() == [0, 1, 2, 3, 4, 5] and not cache.cache.manifest_store.problems()
    assert not bad.exists() and any((cache.directory / 'quarantine' / 'manifest.d').glob(f'{name}.*.reason.txt'))
    cache.load_phiml_cache(sim)


def test_a_malformed_index_entry_is_dropped_and_the_sim_adopted(cache):
    index = json.loads((cache.directory / 'manifest.json').read_text())
    index['sims']['2'] = None
    (cache.directory / 'manifest.json').write_text(json.dumps(index))
    assert cache.cached_indices() == [0, 1, 3, 4, 5]
    with pytest.raises(CacheError, match=r"manifest.json#2 is malformed: expected a JSON object"):
        cache.load_phiml_cache(2)
    with pytest.warns(UserWarning, match=r'manifest.json#2 dropped'):
        cache.generate(6, progress=False)
    assert cache.cached_indices() == [0, 1, 2, 3, 4, 5]


def test_inspect_never_opens_a_path_the_manifest_names(cache, tmp_path, capsys):
    from phiml_data.cli import main

    outside = tmp_path / 'outside.h5'
    outside.write_bytes(cache.path(0).read_bytes())
    index = json.loads((cache.directory / 'manifest.json').read_text())
    index['sims']['0']['file'] = os.path.relpath(outside, cache.directory)
    (cache.directory / 'manifest.json').write_text(json.dumps(index))
    os.utime(outside, (0, 0))
    assert main(['inspect', str(cache.directory)]) == 0
    out = capsys.readouterr().out
    assert 'malformed manifest entry' in out and "'file' must be the sim's own file name" in out
    assert os.stat(outside).st_atime == 0  # never opened


def test_a_sim_file_that_is_a_symlink_is_refused_and_quarantined(cache, tmp_path):
    outside = tmp_path / 'elsewhere.h5'
    os.replace(cache.path(1), outside)
    os.symlink(outside, cache.path(1))
    cache.cache.forget_verification(1)
    with pytest.raises(CacheError, match=r'sim_000001.h5 \(sim 1\) is a symbolic link'):
        cache.load_phiml_cache(1)
    assert 1 not in cache.cached_indices()
    assert cache.generate(6, progress=False) == [1]  # the link moved to quarantine/, the sim regenerated
    assert outside.exists() and not cache.path(1).is_symlink()


def test_manifest_entries_are_merged_with_the_index(tmp_path):
    dm = DataManager(tmp_path, SMALL)
    dm.generate(3, progress=False)
    entry = dm.manifest()[1]
    dm.cache.manifest_store.update({7: {**entry, 'file': 'sim_000007.h5'}}, remove=[2])
    assert sorted(dm.manifest()) == [0, 1, 7]  # pending entry files count before compaction
    assert sorted(DataManager(tmp_path, SMALL).manifest()) == [0, 1, 7]  # and for a fresh reader
    assert dm.cache.manifest_store.compact() and sorted(dm.manifest()) == [0, 1, 7]


def test_a_dataset_over_all_cached_sims_names_every_sim_it_leaves_out(cache, tmp_path):
    """Issue #28.5: 2 of 3 sims served, no warning, although loading the others refuses them."""
    from phiml_data import CacheWarning, PhiMLDataset

    (cache.directory / 'manifest.d').mkdir(exist_ok=True)
    (cache.directory / 'manifest.d' / 'sim_000002.json').write_text('[]')  # a malformed entry
    os.replace(cache.path(4), tmp_path / 'elsewhere.h5')
    os.symlink(tmp_path / 'elsewhere.h5', cache.path(4))  # a symbolic link
    with pytest.warns(CacheWarning) as caught:
        ds = PhiMLDataset(cache, n_targets=1)
    message = str(caught[0].message)
    assert ds.sims == [0, 1, 3, 5] and sorted(ds.left_out) == [2, 4]
    assert 'leaves out sims 2: its manifest entry sim_000002.json is malformed' in message
    assert '4: sim_000004.h5 is a symbolic link' in message and 'Run generate() to repair them' in message
