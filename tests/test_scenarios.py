"""Scenarios: shapes, metadata, per-sim seeding independent of batching and process, Field rebuilding."""

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from conftest import arrays, run_python
from phiml_data import Burgers1D, Burgers2D, SmokePlume, simulate, to_field
from phiml_data.scenarios import FieldSpec, sim_seed, staggered_faces


def _sim_in_child(args):
    scenario, index = args
    return arrays(simulate(scenario, [index])[0]['velocity'])


@pytest.mark.parametrize('scenario', [Burgers1D(resolution=32, steps=5), Burgers2D(resolution=16, steps=5)])
def test_sim_i_is_identical_alone_batched_and_in_another_process(scenario):
    batched = simulate(scenario, [0, 1, 2, 3])
    alone = simulate(scenario, [2])[0]
    np.testing.assert_array_equal(arrays(batched[2]['velocity']), arrays(alone['velocity']))
    with ProcessPoolExecutor(1) as pool:
        np.testing.assert_array_equal(
            arrays(batched[2]['velocity']), pool.submit(_sim_in_child, (scenario, 2)).result()
        )
    assert not np.array_equal(arrays(batched[0]['velocity']), arrays(batched[1]['velocity']))


def test_seed_depends_on_dataset_seed_and_index():
    assert len({sim_seed(0, 0), sim_seed(0, 1), sim_seed(1, 0)}) == 3
    child = run_python('import sys; from phiml_data.scenarios import sim_seed; print(sim_seed(3, 7))')
    assert int(child) == sim_seed(3, 7)  # stable across processes (no hash randomisation, no global state)


def test_canonical_shapes_and_item_names():
    v1 = simulate(Burgers1D(resolution=32, steps=3), [0])[0]['velocity']
    assert v1.shape.names == ('time', 'x', 'vector') and v1.shape.get_item_names('vector') == ('x',)
    v2 = simulate(Burgers2D(resolution=16, steps=3), [0])[0]['velocity']
    assert v2.shape.names == ('time', 'x', 'y', 'vector') and v2.shape.get_size('time') == 4
    assert [d.dim_type for d in v2.shape] == ['batch', 'spatial', 'spatial', 'channel']


def test_smoke_fields_metadata_and_field_rebuild():
    scenario = SmokePlume(resolution=16, steps=3)
    sim = simulate(scenario, [1])[0]
    assert set(sim) == {'velocity', 'density', 'inflow'}
    assert 'time' not in sim['inflow'].shape and sim['density'].shape.get_size('time') == 4
    assert arrays(sim['density'])[-1].max() > 0  # smoke flowed in
    meta = scenario.metadata(1)
    assert meta['fields']['velocity'] == {'grid': 'staggered', 'boundary': 'zero', 'vector': True, 'static': False}
    assert meta['bounds'] == {'x': [0.0, 32.0], 'y': [0.0, 32.0]} and meta['resolution'] == {'x': 16, 'y': 16}
    assert to_field(sim["velocity"], meta, "velocity").is_staggered
    density = to_field(sim['density'], meta, 'density')
    assert density.is_centered and density.resolution.sizes == (16, 16)
    with pytest.raises(KeyError, match="No field 'pressure'"):
        to_field(sim['density'], meta, 'pressure')


def test_smoke_conserves_the_inflowing_mass_and_stays_non_negative():
    scenario = SmokePlume(resolution=16, steps=8, buoyancy=1.0)
    sim = simulate(scenario, [0])[0]
    density, inflow = arrays(sim['density']).astype(np.float64), arrays(sim['inflow']).astype(np.float64)
    frames = np.arange(scenario.frames)
    np.testing.assert_allclose(density.sum((1, 2)), frames * scenario.dt * inflow.sum(), rtol=1e-5)
    assert density.min() >= 0 and np.abs(arrays(sim['velocity'])).max() > 0.5  # the plume moved, mass still exact


def _faces(grid):
    return {d: grid.values[{'~vector': d}].numpy(('x', 'y')) for d in 'xy'}


def test_staggered_velocity_is_cached_exactly_and_restarts_the_solver(tmp_path):
    from phiml.backend import NUMPY

    from phiml_data import DataManager

    scenario = SmokePlume(resolution=16, steps=4)
    dm = DataManager(tmp_path, scenario)
    dm.generate(1, progress=False)
    cached = dm.load_phiml_cache(0)
    with NUMPY:
        state, solver = scenario.initial_state(0), []
        for _ in range(scenario.steps):
            state = scenario.step(state)
            solver.append(state['velocity'])
        for t, grid in enumerate(solver, 1):  # the cache holds the solver's own faces, bit for bit
            rebuilt = to_field(cached['velocity'].time[t], cached.metadata, 'velocity')
            assert rebuilt.is_staggered and rebuilt.values.shape == grid.values.shape
            for d, faces in _faces(grid).items():
                np.testing.assert_array_equal(_faces(rebuilt)[d], faces)
        frame = {k: to_field(v.time[2] if 'time' in v.shape else v, cached.metadata, k) for k, v in cached.items()}
        restarted = scenario.step(frame)  # restarting the solver from a cached frame gives the next one exactly
    np.testing.assert_array_equal(arrays(staggered_faces(restarted['velocity'])), arrays(cached['velocity'].time[3]))
    np.testing.assert_array_equal(arrays(restarted['density'].values), arrays(cached['density'].time[3]))


@pytest.mark.parametrize('boundary', ['zero', 'periodic'])
def test_staggered_face_layout_round_trips_and_places_the_faces(boundary):
    from phi.field import StaggeredGrid
    from phi.geom import Box
    from phiml import math

    from phiml_data.scenarios import BOUNDARIES

    x = lambda p: math.cos(p.vector['x']) * math.sin(2 * p.vector['y']) + p.vector['y'] * 0.1
    grid = StaggeredGrid(x, BOUNDARIES[boundary], x=8, y=4, bounds=Box(x=8, y=4))
    faces = staggered_faces(grid)
    assert faces.shape.names == ('x', 'y', 'vector') and faces.shape.sizes == (8, 4, 2)
    meta = {
        'fields': {'v': {'grid': 'staggered', 'boundary': boundary, 'vector': True, 'static': False}},
        'bounds': {'x': [0, 8], 'y': [0, 4]},
        'resolution': {'x': 8, 'y': 4},
    }
    rebuilt = to_field(faces, meta, 'v')
    for d in 'xy':
        np.testing.assert_array_equal(
            rebuilt.values[{'~vector': d}].numpy('x,y'), grid.values[{'~vector': d}].numpy('x,y')
        )
    # component x at cell (i, j) is the x-face at (i, j + 1/2); the zero wall face i = 0 is 0
    i, j = np.meshgrid(np.arange(8.0), np.arange(4.0) + 0.5, indexing='ij')
    expected = np.cos(i) * np.sin(2 * j) + 0.1 * j
    if boundary == 'zero':
        expected[0] = 0
    np.testing.assert_allclose(faces.vector['x'].numpy('x,y'), expected, atol=1e-6)


def test_staggered_fields_need_boundaries_whose_faces_fit_the_grid():
    with pytest.raises(
        ValueError, match=r"staggered field must be a vector field with boundary \('periodic', 'zero'\)"
    ):
        FieldSpec('staggered', 'zero-gradient', vector=True)
    with pytest.raises(ValueError, match="grid must be 'centered' or 'staggered'"):
        FieldSpec('face')


def test_invalid_resolution_is_rejected():
    with pytest.raises(ValueError, match='resolution must be 2 ints'):
        Burgers2D(resolution=(16, 16, 16))


def test_the_spectral_scheme_converges_conserves_the_mean_and_is_the_same_alone_or_batched():
    import pytest as _pytest

    base = dict(resolution=64, steps=10, dt=0.05, scheme='spectral')
    coarse = simulate(Burgers1D(**base, refine=4), [0, 1])
    fine = simulate(Burgers1D(**base, refine=8), [1])[0]['velocity'].numpy('time,x,vector')
    ours = coarse[1]['velocity'].numpy('time,x,vector')
    assert ours.shape == (11, 64, 1) and ours.dtype == np.float32
    errors = [np.linalg.norm(ours[t] - fine[t]) / np.linalg.norm(fine[t]) for t in range(11)]
    assert max(errors) < 0.05, errors  # within 5 % of the same data simulated on a 2x finer grid
    assert abs(ours.mean(axis=(1, 2))).max() < 1e-5  # periodic 1D Burgers conserves its mean
    alone = simulate(Burgers1D(**base, refine=4), [1])[0]['velocity'].numpy('time,x,vector')
    np.testing.assert_array_equal(alone, ours)
    with _pytest.raises(ValueError, match="refine > 1 needs scheme='spectral'"):
        Burgers1D(refine=2)
