"""DataManager: exact round trips, cache keys, crash safety, bad-file errors, Scene import, CLI."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from phiml import math

from conftest import ROOT, arrays
from phiml_data import Burgers1D, Burgers2D, CacheError, DataManager, PhiMLDataset, SmokePlume, simulate
from phiml_data.importers import import_scene
from phiml_data.keys import cache_key

SCENARIOS = [Burgers1D(resolution=32, steps=4), Burgers2D(resolution=16, steps=4), SmokePlume(resolution=16, steps=2)]


def assert_same_tensors(a: dict, b: dict):
    assert set(a) == set(b)
    for k in a:
        assert a[k].shape == b[k].shape, k  # names, types, sizes, item names
        assert [d.dim_type for d in a[k].shape] == [d.dim_type for d in b[k].shape]
        assert a[k].dtype == b[k].dtype
        np.testing.assert_array_equal(arrays(a[k]), arrays(b[k]))


@pytest.mark.parametrize('fmt', ['h5', 'npz', 'zarr'])
@pytest.mark.parametrize('scenario', SCENARIOS, ids=lambda s: s.name)
def test_round_trip_is_exact(tmp_path, scenario, fmt):
    if fmt == 'zarr':
        pytest.importorskip('zarr')
    dm = DataManager(tmp_path, scenario, fmt, allow_pickle=fmt == 'npz')
    data = simulate(scenario, [3])[0]
    dm.save_phiml_cache(3, data)
    loaded = dm.load_phiml_cache(3)
    assert_same_tensors(data, loaded)
    assert (
        loaded.metadata['sim_index'] == 3
        and loaded.metadata['params'] == scenario.params()
        and loaded.metadata['origin'] == 'saved'
    )
    assert loaded.metadata['fields'] == {k: v.__dict__ for k, v in scenario.fields.items()}
    entry = dm.manifest()[3]
    assert entry['file'] == f'sim_000003{dm.format.suffix}' and set(entry['fields']) == set(data)


def test_h5_is_self_describing_chunked_and_readable_by_phiml(burgers_dm):
    path = burgers_dm.path(0)
    with h5py.File(path, 'r') as f:
        ds = f['root[velocity]']
        assert ds.attrs['dims'] == 'time,x,y,vector' and ds.attrs['dim_types'] == 'batch,spatial,spatial,channel'
        assert json.loads(ds.attrs['item_names']) == {'vector': ['x', 'y']}
        assert ds.attrs['frame_xxh3'].shape == (13,) and f.attrs['format_version'] == 2
        assert ds.chunks == (1, 16, 16, 2)  # one frame per chunk: a window read touches only its frames
        meta = json.loads(f.attrs['metadata'])
        assert meta['dt'] == 0.05 and meta['fields']['velocity']['boundary'] == 'periodic'
    from phiml.math._tree import load_h5

    lazy = load_h5(str(path), load_into_memory=())
    np.testing.assert_array_equal(arrays(lazy['velocity']), arrays(burgers_dm.load_phiml_cache(0)['velocity']))


def test_cache_key_changes_with_everything_that_determines_the_data(tmp_path):
    base = Burgers2D(resolution=16, steps=4)
    variants = [
        Burgers2D(resolution=16, steps=5),
        Burgers2D(resolution=32, steps=4),
        Burgers2D(resolution=16, steps=4, seed=1),
        Burgers2D(resolution=16, steps=4, viscosity=0.02),
        Burgers2D(resolution=16, steps=4, dt=0.01),
    ]
    keys = {cache_key(base)} | {cache_key(v) for v in variants} | {cache_key(base, 'npz')}
    assert len(cache_key(base)) == 16
    assert len(keys) == len(variants) + 2
    assert cache_key(base) == cache_key(Burgers2D(resolution=(16, 16), steps=4))
    dm = DataManager(tmp_path, base)
    dm.generate(1, progress=False)
    other = DataManager(tmp_path, Burgers2D(resolution=16, steps=4, seed=1))
    assert other.directory != dm.directory and other.cached_indices() == []


def test_generate_creates_only_missing_sims(tmp_path):
    dm = DataManager(tmp_path, Burgers2D(resolution=16, steps=3))
    assert dm.generate(3, progress=False) == [0, 1, 2]
    mtime = dm.path(0).stat().st_mtime_ns
    assert dm.generate(5, progress=False) == [3, 4]
    assert dm.path(0).stat().st_mtime_ns == mtime
    assert dm.summary()['sims'] == 5 and dm.summary()['bytes'] > 0


_KILLED_CHILD = """
import sys, time
from pathlib import Path
from phiml_data.formats.h5 import H5
from phiml_data import DataManager, Burgers2D
calls = {'n': 0}
real = H5._write
def stalling_write(self, tmp, fields, header):
    real(self, tmp, fields, header)
    calls['n'] += 1
    if calls['n'] == 3:  # inside the third file's write: temporary file written, not yet renamed
        Path(sys.argv[2]).write_text('writing')
        time.sleep(600)
H5._write = stalling_write
DataManager(sys.argv[1], Burgers2D(resolution=16, steps=3)).generate(5, batch_size=1, progress=False)
"""


@pytest.mark.slow
def test_kill_9_mid_write_leaves_nothing_half_written_and_rerun_completes(tmp_path):
    marker = tmp_path / 'marker'
    child = subprocess.Popen([sys.executable, '-c', _KILLED_CHILD, str(tmp_path), str(marker)], cwd=ROOT)
    try:
        for _ in range(600):
            if marker.exists() or child.poll() is not None:
                break
            time.sleep(0.1)
        assert marker.exists(), 'child never reached the third write'
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    dm = DataManager(tmp_path, Burgers2D(resolution=16, steps=3))
    assert dm.cached_indices() == [0, 1]
    assert not dm.path(2).exists()  # the half-written file never got its final name
    assert list(dm.directory.glob('.sim_000002*.tmp'))  # only the temporary file is left
    with pytest.raises(CacheError, match='not cached'):
        dm.load_phiml_cache(2)
    assert dm.generate(5, progress=False) == [2, 3, 4]
    assert not list(dm.directory.glob('*.tmp'))  # the dead writer's temporary file is swept
    fresh = simulate(dm.scenario, [2, 4])
    assert_same_tensors(dm.load_phiml_cache(2), fresh[0])
    assert_same_tensors(dm.load_phiml_cache(4), fresh[1])


def test_file_renamed_but_not_in_manifest_is_adopted(tmp_path):
    dm = DataManager(tmp_path, Burgers2D(resolution=16, steps=3))
    dm.generate(2, progress=False)
    (dm.directory / 'manifest.json').unlink()
    assert dm.generate(2, progress=False) == []
    assert dm.cached_indices() == [0, 1]


@pytest.fixture
def one_sim(tmp_path):
    dm = DataManager(tmp_path, Burgers2D(resolution=16, steps=3))
    dm.generate(2, progress=False)
    return dm


def test_truncated_file_error_names_file_and_fix(one_sim):
    path = one_sim.path(1)
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(CacheError) as err:
        one_sim.load_phiml_cache(1)
    assert str(path) in str(err.value) and 'truncated' in str(err.value)
    assert one_sim.generate(2, progress=False) == [1]  # the cheap size check finds it, quarantines and regenerates it
    assert list((one_sim.directory / 'quarantine').glob('sim_000001.h5.*.reason.txt'))
    assert_same_tensors(one_sim.load_phiml_cache(1), simulate(one_sim.scenario, [1])[0])


def test_corrupted_values_fail_the_frame_check(one_sim):
    path = one_sim.path(1)
    with h5py.File(path, 'r+') as f:
        f['root[velocity]'][2, 0, 0, 0] += 1
    with pytest.raises(
        CacheError, match=r"sim_000001.h5 \(sim 1\): field 'velocity' frame 2 fails its xxh3-64 checksum check"
    ):
        one_sim.load_phiml_cache(1)


def test_file_from_another_configuration_is_refused_naming_each_difference(tmp_path, one_sim):
    other = DataManager(tmp_path / 'other', Burgers2D(resolution=16, steps=3, seed=5))
    other.generate(1, progress=False)
    one_sim.path(1).write_bytes(other.path(0).read_bytes())
    with pytest.raises(
        CacheError, match=r'belongs to another configuration: params.seed: 5 \(found\) vs 0 \(expected\)'
    ) as err:
        one_sim.load_phiml_cache(1)
    assert 'holds sim 0, not sim 1' in str(err.value)


def test_missing_and_unknown_fields_are_reported(tmp_path):
    dm = DataManager(tmp_path, SmokePlume(resolution=16, steps=1))
    dm.generate(1, progress=False)
    with pytest.raises(CacheError, match=r"Unknown field\(s\) \['smoke'\]; scenario 'smoke' has") as err:
        dm.load_phiml_cache(0, ['smoke'])
    assert 'generate' not in str(err.value)  # an intact file is not to be regenerated
    with h5py.File(dm.path(0), 'r+') as f:
        del f['root[inflow]']
    with pytest.raises(
        CacheError, match=r"fields \['density', 'velocity'\]; scenario 'smoke' has \['density', 'inflow', 'velocity'\]"
    ):
        dm.load_phiml_cache(0)


def test_nan_is_refused_at_write_time_with_index_and_parameters(one_sim):
    data = dict(one_sim.load_phiml_cache(0))
    data['velocity'] = data['velocity'] * math.wrap(np.nan)
    with pytest.raises(
        ValueError,
        match=r"(?s)Sim 7 does not fit scenario 'burgers2d' \(parameters .*'viscosity': 0.01.*field 'velocity' contains NaN or Inf",
    ):
        one_sim.save_phiml_cache(7, data)
    assert not one_sim.path(7).exists()


def test_wrong_fields_or_dims_are_refused(one_sim):
    data = one_sim.load_phiml_cache(0)
    with pytest.raises(
        ValueError, match=r"fields \['density'\] do not match scenario 'burgers2d' fields \['velocity'\]"
    ):
        one_sim.save_phiml_cache(9, {'density': data['velocity']})
    with pytest.raises(ValueError, match=r"must be a Tensor with dims \['time', 'x', 'y', 'vector'\]"):
        one_sim.save_phiml_cache(9, {'velocity': data['velocity'].time[0]})
    with pytest.raises(ValueError, match=r"has shape \(time:b=3,.*needs \(time:b=4,"):
        one_sim.save_phiml_cache(9, {'velocity': data['velocity'].time[:3]})
    with pytest.raises(ValueError, match=r"has dtype float64; scenario 'burgers2d' stores float32"):
        one_sim.save_phiml_cache(
            9, {'velocity': math.tensor(arrays(data['velocity']).astype(np.float64), data['velocity'].shape)}
        )
    with pytest.raises(ValueError, match=r'integers >= 0'):
        one_sim.save_phiml_cache(-1, data)


def test_import_phiflow_scene(tmp_path):
    from phi.field import Scene

    scenario = SmokePlume(resolution=16, steps=2)
    state = scenario.initial_state(0)
    scene = Scene.create(str(tmp_path / 'scenes'), copy_calling_script=False)
    scene.put_property('dt', scenario.dt)
    for frame in range(3):
        scene.write(
            {'velocity': state['velocity'], 'density': state['density'], 'inflow': state['inflow']}, frame=frame
        )
        state = scenario.step(state)
    dm = DataManager(tmp_path / 'cache', scenario)
    import_scene(dm, scene.path, 0)
    sim = dm.load_phiml_cache(0)
    assert sim['velocity'].shape.get_size('time') == 3 and 'time' not in sim['inflow'].shape
    np.testing.assert_allclose(
        arrays(sim['density'].time[2]), arrays(simulate(scenario, [0])[0]['density'].time[2]), atol=1e-6
    )
    partial = Scene.create(str(tmp_path / 'partial'), copy_calling_script=False)
    partial.write({'velocity': state['velocity']}, frame=0)
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['density', 'inflow'\]"):
        import_scene(dm, partial.path, 1)


@pytest.mark.slow
def test_cli_generate_and_inspect(tmp_path):
    config = tmp_path / 'c.yaml'
    config.write_text(
        f"scenario: {{name: burgers1d, resolution: [32], steps: 3}}\ndata: {{cache_dir: '{tmp_path / 'cache'}', n_sims: 2}}\n"
    )
    out = subprocess.run(
        [sys.executable, '-m', 'phiml_data', 'generate', '--config', str(config), '--quiet'],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    assert 'sims: 2' in out and 'field velocity: (time:b=4,x:s=32,vector:c=(x))' in out
    directory = next((tmp_path / 'cache').iterdir())
    out = subprocess.run(
        [sys.executable, '-m', 'phiml_data', 'inspect', str(directory)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    assert 'metadata of the first sim' in out and '"boundary": "periodic"' in out
    bad = subprocess.run(
        [sys.executable, '-m', 'phiml_data', 'generate', '--config', str(tmp_path / 'missing.yaml')],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and 'missing.yaml does not exist' in bad.stderr


@pytest.mark.parametrize(
    'edit, expected',
    [
        (lambda m: m.update(dt=0.5), 'metadata dt: 0.5 (found) vs 0.05 (expected)'),
        (lambda m: m.update(bounds={'x': [0, 1], 'y': [0, 1]}), 'metadata bounds.x: [0, 1] (found)'),
        (
            lambda m: m['fields']['velocity'].update(boundary='zero'),
            "metadata fields.velocity.boundary: 'zero' (found)",
        ),
    ],
)
def test_an_edited_metadata_attribute_is_refused(one_sim, edit, expected):
    with h5py.File(one_sim.path(1), 'r+') as f:
        meta = json.loads(f.attrs['metadata'])
        edit(meta)
        f.attrs['metadata'] = json.dumps(meta)
    with pytest.raises(CacheError, match=r'sim_000001.h5 \(sim 1\) fails verification') as err:
        one_sim.load_phiml_cache(1)
    assert expected in str(err.value)
    assert one_sim.generate(2, progress=False, verify=True) == [1]  # quarantined and regenerated
    assert one_sim.load_phiml_cache(1).metadata['dt'] == 0.05


def test_a_flipped_bit_in_a_zarr_chunk_names_file_and_sim_on_every_read_path(tmp_path):
    import zipfile

    from phiml_data import PhiMLDataset

    dm = DataManager(tmp_path, Burgers2D(resolution=16, steps=4), fmt='zarr')
    dm.generate(2, progress=False)
    data = bytearray(dm.path(1).read_bytes())
    with zipfile.ZipFile(dm.path(1)) as z:
        chunk = next(i for i in z.infolist() if i.filename.startswith('velocity/c/2'))
    data[chunk.header_offset + 30 + len(chunk.filename) + 8] ^= 1  # inside the chunk's bytes: its zip CRC fails
    dm.path(1).write_bytes(bytes(data))
    reads = {
        'load': lambda: dm.load_phiml_cache(1),
        'memory': lambda: list(PhiMLDataset(dm, mode='memory', n_targets=2, normalize=False).iterate_batches(4)),
        'lazy': lambda: list(PhiMLDataset(dm, mode='lazy', n_targets=2, normalize=False).iterate_batches(4)),
    }
    for name, read in reads.items():
        dm.cache.forget_verification(1)
        with pytest.raises(CacheError, match=r'Sim 1: Cache file .*sim_000001.zarr.zip: .*corrupted \(BadZipFile'):
            read()
    assert dm.generate(2, progress=False, verify=True) == [1]
    assert list((dm.directory / 'quarantine').glob('sim_000001.zarr.zip.*.reason.txt'))


def test_corrupted_json_files_name_the_file(dm):
    ds = PhiMLDataset(dm, [0, 1], n_targets=2)
    stats = next(dm.directory.glob('stats-*.json'))
    stats.write_text('{"fields": ')
    with pytest.raises(CacheError, match=rf'{stats.name} is not valid JSON .*normalisation statistics'):
        PhiMLDataset(dm, [0, 1], n_targets=2)
    (dm.directory / 'config.json').write_text('not json')
    with pytest.raises(CacheError, match=r'config.json is not valid JSON'):
        dm.generate(3, progress=False)
    assert ds.stats
