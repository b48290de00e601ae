"""Importing benchmark files (`phiml_data.importers`): malformed files are refused naming the file and every problem,
before anything is allocated or written; a refused import leaves no file behind."""

import h5py
import numpy as np
import pytest

from phiml_data import (
    Burgers1D,
    Burgers2D,
    DataManager,
    SmokePlume,
    scenario_from_scene,
)
from phiml_data.importers import import_benchmark, import_scene

SCENARIO = Burgers1D(resolution=32, steps=4)


def _pdebench(path, n=3, edit=None):
    """A PDEBench-layout file of `n` trajectories of `SCENARIO` (cell-centre `x-coordinate`, `t-coordinate` with one
    extra entry, as PDEBench writes them); `edit(f)` changes it before it is closed."""
    rng = np.random.default_rng(0)
    with h5py.File(path, 'w') as f:
        f['tensor'] = rng.standard_normal((n, SCENARIO.frames, 32)).astype(np.float32)
        f['x-coordinate'] = ((np.arange(32) + 0.5) * SCENARIO.length / 32).astype(np.float32)
        f['t-coordinate'] = (np.arange(SCENARIO.frames + 1) * SCENARIO.dt).astype(np.float32)
        if edit:
            edit(f)
    return path


def _replace(name, values):
    def edit(f):
        del f[name]
        f[name] = values

    return edit


def _declared_only(f):  # 200 trajectories declared, one written (chunked: the others have no storage)
    del f['tensor']
    ds = f.create_dataset('tensor', (200, SCENARIO.frames, 32), np.float32, chunks=(1, SCENARIO.frames, 32))
    ds[0] = 1.0


def _huge(f):  # 20 TiB declared, nothing written
    del f['tensor']
    f.create_dataset('tensor', (2**20, SCENARIO.frames, 2**20), np.float32, chunks=(1, 1, 1024))


CASES = {
    'non-uniform time': (
        _replace('t-coordinate', np.array([0, 0.05, 0.1, 0.2, 0.25, 0.3], np.float32)),
        'time coordinate is not uniformly increasing',
    ),
    'non-uniform x': (
        _replace('x-coordinate', np.sort(np.random.default_rng(1).uniform(0, 6, 32)).astype(np.float32)),
        'x coordinate is not uniformly increasing',
    ),
    'strings': (
        _replace('tensor', np.full((3, SCENARIO.frames, 32), b'abc')),
        "dataset 'tensor' holds |S3 values; expected numbers",
    ),
    'unwritten': (_declared_only, '199 of the 200 declared trajectories were never written'),
    '20 TiB': (
        _huge,
        "dataset 'tensor' has shape (1048576, 5, 1048576); expected [1048576, 5, 32] (trajectories, frames, the coordinates'",
    ),
    'wrong sizes': (
        _replace('x-coordinate', np.arange(16, dtype=np.float32)),
        "has shape (3, 5, 32); expected [3, 5, 16] (trajectories, frames, the coordinates' sizes)",
    ),
    'no coordinate': (lambda f: f.__delitem__('x-coordinate'), 'no spatial coordinates (x-coordinate)'),
    '2^40 coordinate samples': (  # issue #28.10: was a MemoryError
        lambda f: (
            f.__delitem__('x-coordinate'),
            f.create_dataset('x-coordinate', (2**40,), np.float32, chunks=(1024,)),
        ),
        "x coordinate declares (1099511627776,) samples; more than 67108864 per axis is no grid",
    ),
    'no trajectories': (  # issue #28.10: was an IndexError
        _replace('tensor', np.zeros((0, SCENARIO.frames, 32), np.float32)),
        'the datasets hold 0 trajectories: nothing to import',
    ),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_a_malformed_file_is_refused_before_anything_is_read(tmp_path, case):
    edit, fragment = CASES[case]
    path = _pdebench(tmp_path / 'p.hdf5', edit=edit)
    dm = DataManager(tmp_path / 'cache', SCENARIO)
    with pytest.raises(ValueError) as err:
        import_benchmark(dm, path, 'pdebench')
    assert str(path) in str(err.value) and fragment in str(err.value), str(err.value)
    assert not dm.directory.exists() or not list(dm.directory.glob('sim_*'))


def test_written_trajectories_of_a_partly_written_file_can_be_imported(tmp_path):
    dm = DataManager(tmp_path / 'cache', SCENARIO)
    assert import_benchmark(dm, _pdebench(tmp_path / 'p.hdf5', edit=_declared_only), 'pdebench', trajectories=[0]) == [
        0
    ]
    assert float(dm.load_phiml_cache(0)['velocity'].time[2].x[5].vector[0]) == 1.0


def test_a_refused_import_leaves_no_file_that_generate_would_adopt(tmp_path):
    def nan_in_the_last(f):
        values = f['tensor'][()]
        values[2, 3, 7] = np.nan
        _replace('tensor', values)(f)

    dm = DataManager(tmp_path / 'cache', SCENARIO)
    with pytest.raises(
        ValueError, match=r'trajectory 2: Sim 2 does not fit [\s\S]*NaN or Inf[\s\S]*Nothing was imported'
    ):
        import_benchmark(dm, _pdebench(tmp_path / 'p.hdf5', edit=nan_in_the_last), 'pdebench')
    assert not list(dm.directory.glob('sim_*')) and dm.cached_indices() == []
    assert dm.generate(1, progress=False) == [0] and dm.manifest()[0]['origin'] == 'simulated'


def test_importing_over_cached_sims_is_refused(tmp_path):
    dm = DataManager(tmp_path / 'cache', SCENARIO)
    dm.generate(2, progress=False)
    with pytest.raises(ValueError, match=r'sims \[0, 1\] exist already'):
        import_benchmark(dm, _pdebench(tmp_path / 'p.hdf5'), 'pdebench')
    assert import_benchmark(dm, tmp_path / 'p.hdf5', 'pdebench', first_index=2) == [2, 3, 4]
    assert dm.manifest()[0]['origin'] == 'simulated'


def test_a_file_missing_part_of_the_layout_is_one_clear_line(tmp_path, capsys):
    from phiml_data.cli import main

    with h5py.File(tmp_path / 'w.hdf5', 'w') as f:
        f.create_group('t0_fields')
        f.create_group('t1_fields')['velocity'] = np.zeros((1, 5, 32, 1), np.float32)
    config = tmp_path / 'c.yaml'
    config.write_text(f"scenario: {{name: burgers1d, resolution: [32], steps: 4}}\ndata: {{cache_dir: '{tmp_path}'}}\n")
    assert main(['import', str(tmp_path / 'w.hdf5'), '--from', 'the_well', '--config', str(config)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith('error: ') and "w.hdf5 is not a readable the_well file (KeyError" in err and err.count('\n') == 1
    )


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


def test_a_vector_field_with_more_components_than_the_scenario_has_axes_is_one_line(tmp_path, capsys):
    """Issue #28.10: a 3-component velocity for a 2D scenario ended in a PhiML AssertionError."""
    from benchmark_files import write_the_well

    from phiml_data.cli import main

    scenario = Burgers2D(resolution=16, steps=3)
    velocity = np.zeros((1, scenario.frames, 16, 16, 3), np.float32)
    path = write_the_well(tmp_path / 'w.hdf5', scenario, {'velocity': velocity})
    config = tmp_path / 'c.yaml'
    config.write_text(
        f"scenario: {{name: burgers2d, resolution: [16, 16], steps: 3}}\ndata: {{cache_dir: '{tmp_path}'}}\n"
    )
    assert main(['import', str(path), '--from', 'the_well', '--config', str(config)]) == 2
    err = capsys.readouterr().err
    assert "field 'velocity' has 3 vector components in the file; scenario 'burgers2d' has 2 (x, y)" in err
    assert err.count('\n') == 2 and 'Traceback' not in err  # the error and "Nothing was imported."


@pytest.mark.slow
@pytest.mark.parametrize('layout', ['the_well', 'pdebench'])
def test_a_benchmark_file_trains_a_network_without_a_scenario_of_ours(tmp_path, capsys, layout):
    """Issue #31.4: The Well's own dummy file and the PDEBench fixture go through `import --out`, then `run`."""
    import json

    from benchmark_files import LAYOUT_FIXTURES

    from phiml_data.cli import main

    if layout == 'the_well':
        from the_well.utils.dummy_data import write_dummy_data

        path = tmp_path / 'dummy.hdf5'
        write_dummy_data(str(path))  # points on both domain ends, a static and a vector field
    else:
        path = LAYOUT_FIXTURES['pdebench'](tmp_path)[1]
    out = tmp_path / 'recorded'
    assert main(['import', str(path), '--from', layout, '--out', str(out)]) == 0
    assert main(['run', '--config', str(out / 'config.yaml'), '--quiet', 'training.epochs=1']) == 0
    metrics = json.loads((out / 'run' / 'metrics.json').read_text())
    assert metrics['mode'] == 'synthetic' and all(np.isfinite(m['model']) for m in metrics['summary'].values())
    capsys.readouterr()
    assert main(['run', '--config', str(out / 'config.yaml'), 'training.mode=physical']) == 2
    err = capsys.readouterr().err
    assert "scenario 'recorded' has no learnable parameters to fit" in err and err.count('\n') == 1
