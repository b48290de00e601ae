"""Issue #10: SLURM array mode, no per-sim litter, filesystems without flock, a manifest that scales."""

import errno
import subprocess
import sys

import pytest

from conftest import ROOT
from phiml_data import Burgers2D, DataManager

SCENARIO = Burgers2D(resolution=16, steps=6)


def sim_bytes(dm):
    return {p.name: p.read_bytes() for p in sorted(dm.directory.glob('sim_*.h5'))}


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
    array = DataManager(tmp_path / 'array', SCENARIO)
    local = DataManager(tmp_path / 'local', SCENARIO)
    local.generate(10, progress=False)
    assert sim_bytes(array) == sim_bytes(local) and len(sim_bytes(local)) == 10
    assert array.manifest() == {i: {**e} for i, e in local.manifest().items()}


def test_no_lock_temporary_or_entry_files_stay_behind(tmp_path):
    dm = DataManager(tmp_path, SCENARIO)
    dm.generate(5, batch_size=2, progress=False)
    names = sorted(p.name for p in dm.directory.iterdir())
    assert names == ['config.json', 'manifest.d', 'manifest.json', 'manifest.lock'] + [
        f'sim_{i:06d}.h5' for i in range(5)
    ]
    assert not list((dm.directory / 'manifest.d').iterdir())  # compacted into manifest.json at the end of generate


def test_manifest_entries_are_merged_with_the_index(tmp_path):
    dm = DataManager(tmp_path, SCENARIO)
    dm.generate(3, progress=False)
    entry = dm.manifest()[1]
    dm.manifest_store.update({7: {**entry, 'file': 'sim_000007.h5'}}, remove=[2])
    assert sorted(dm.manifest()) == [0, 1, 7]  # pending entry files count before compaction
    assert sorted(DataManager(tmp_path, SCENARIO).manifest()) == [0, 1, 7]  # and for a fresh reader
    assert dm.manifest_store.compact() and sorted(dm.manifest()) == [0, 1, 7]


def test_a_filesystem_without_flock_is_named_and_array_mode_still_works(tmp_path, monkeypatch, capsys):
    import fcntl

    def no_flock(*args):
        raise OSError(errno.ENOLCK, 'No locks available')

    monkeypatch.setattr(fcntl, 'flock', no_flock)
    dm = DataManager(tmp_path, SCENARIO)
    with pytest.raises(RuntimeError, match=r'does not support flock \(No locks available\).*--shard I/N'):
        dm.generate(2, progress=False)
    assert dm.generate([0, 1], claims=False, progress=False) == [0, 1]
    assert dm.cached_indices() == [0, 1] and len(list((dm.directory / 'manifest.d').iterdir())) == 2  # not compacted
    from phiml_data.cli import main

    assert main(['inspect', str(dm.directory)]) == 0 and 'sims: 2,' in capsys.readouterr().out  # inspect sees them too
