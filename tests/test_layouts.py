"""Benchmark layouts (`phiml_data.layouts`) against files written as PDEBench and The Well write them, read back by
The Well's own `WellDataset` and by a PDEBench-style loader (issue #21)."""

import math

import numpy as np
import pytest
from benchmark_files import read_pdebench, write_pdebench, write_the_well

from phiml_data import Burgers1D, Burgers2D, DataManager, SmokePlume, simulate
from phiml_data.importers import benchmark_description, benchmark_problems, import_benchmark, scenario_from_benchmark
from phiml_data.keys import cache_key

ONE_D = Burgers1D(resolution=32, steps=4, viscosity=0.01 / math.pi)
TWO_D = Burgers2D(resolution=16, steps=3)


@pytest.fixture(scope='module')
def velocity_2d():
    return np.stack([s['velocity'].numpy('time,x,y,vector') for s in simulate(TWO_D, [0, 1])])


@pytest.fixture(scope='module')
def velocity_1d():
    return np.stack([s['velocity'].numpy('time,x,vector')[..., 0] for s in simulate(ONE_D, [0, 1])])


def test_the_wells_own_reader_reads_our_fixture_and_we_import_the_same_values(tmp_path, velocity_2d):
    well = pytest.importorskip('the_well.data')
    rng = np.random.default_rng(0)
    folder = tmp_path / 'well'
    folder.mkdir()
    # a time-constant field that sorts before 'velocity' (as in acoustic_scattering's t0 fields)
    write_the_well(
        folder / 'burgers.hdf5', TWO_D, {'velocity': velocity_2d}, constant={'a_material': rng.random((2, 16, 16))}
    )
    ds = well.WellDataset(path=str(folder), n_steps_input=1, full_trajectory_mode=True, use_normalization=False)
    sample = ds[1]
    assert ds.metadata.constant_field_names[0] == ['a_material'] and ds.metadata.field_names[1] == [
        'velocity_x',
        'velocity_y',
    ]
    np.testing.assert_array_equal(sample['output_fields'].numpy(), velocity_2d[1, 1:])
    assert sample['boundary_conditions'].tolist() == [[2, 2], [2, 2]]  # PERIODIC on both sides of x and y

    dm = DataManager(tmp_path / 'cache', TWO_D)
    assert import_benchmark(dm, folder / 'burgers.hdf5', 'the_well') == [0, 1]
    np.testing.assert_array_equal(dm.load_phiml_cache(1)['velocity'].numpy('time,x,y,vector'), velocity_2d[1])


def test_the_well_per_side_and_per_field_boundaries(tmp_path, velocity_2d):
    bc = {'x0_wall': ('WALL', 'x', 'lower'), 'xL_open': ('OPEN', 'x', 'upper'), 'y_periodic': ('PERIODIC', 'y', 'both')}
    path = write_the_well(tmp_path / 'w.hdf5', TWO_D, {'velocity': velocity_2d}, bc=bc)
    d = benchmark_description(path, 'the_well')
    assert d['boundaries']['velocity'] == {'x': ('zero', 'zero-gradient'), 'y': ('periodic', 'periodic')}
    problems = benchmark_problems(TWO_D, d)
    assert problems == [
        "field 'velocity': boundaries (lower, upper) {'x': ('zero', 'zero-gradient'), 'y': ('periodic', 'periodic')}; "
        "scenario has {'x': ('periodic', 'periodic'), 'y': ('periodic', 'periodic')}"
    ]
    import h5py

    with h5py.File(path, 'a') as f:  # walls that belong to another field do not concern velocity
        for name in ('x0_wall', 'xL_open'):
            f['boundary_conditions'][name].attrs['associated_fields'] = ['tracer']
            f['boundary_conditions'][name].attrs['bc_type'] = 'PERIODIC' if name == 'xL_open' else 'WALL'
    d = benchmark_description(path, 'the_well')
    assert d['boundaries']['velocity']['x'] == ('zero-gradient', 'zero-gradient')  # a side no group covers is open


def test_the_well_time_per_trajectory_with_one_trajectory(tmp_path, velocity_2d):
    path = write_the_well(tmp_path / 'w.hdf5', TWO_D, {'velocity': velocity_2d[:1]}, time_per_trajectory=True)
    d = benchmark_description(path, 'the_well')
    assert d['dt'] == 0.05 and d['frames'] == 4 and benchmark_problems(TWO_D, d) == []


def test_the_well_time_per_trajectory_is_checked_in_every_row(tmp_path, velocity_2d):
    """Issue #28.3: a non-monotonic second row (0, .08, .06, .15) was imported with exit status 0."""
    import h5py

    path = write_the_well(tmp_path / 'w.hdf5', TWO_D, {'velocity': velocity_2d}, time_per_trajectory=True)
    with h5py.File(path, 'a') as f:
        f['dimensions']['time'][1] = np.array([0, 0.08, 0.06, 0.15], np.float32)
    with pytest.raises(ValueError, match=r"time coordinate of trajectory 1 is not uniformly increasing"):
        benchmark_description(path, 'the_well')


def test_points_on_both_domain_ends_are_described_and_refused_in_one_line(tmp_path, velocity_2d):
    walls = {f'{d}_open': ('OPEN', d, 'both') for d in 'xy'}  # not periodic: both ends are distinct samples
    path = write_the_well(tmp_path / 'w.hdf5', TWO_D, {'velocity': velocity_2d}, points=True, bc=walls)
    d = benchmark_description(path, 'the_well')
    assert d['convention'] == {'x': 'points', 'y': 'points'} and d['bounds']['x'] == [0.0, pytest.approx(TWO_D.length)]
    problems = benchmark_problems(TWO_D, d)
    assert any(
        p.startswith('x: the file samples 16 points from 0 to 6.28319, both domain ends included') for p in problems
    )
    with pytest.raises(ValueError, match='samples points on both domain ends'):
        scenario_from_benchmark(path, 'the_well', Burgers2D)


def test_a_periodic_axis_sampled_at_multiples_of_its_spacing_is_a_shifted_cell_centre_grid(tmp_path, velocity_2d):
    """Issue #31.4: such axes were reported with bounds [0, L - dx] and 'both domain ends included'."""
    import h5py

    path = write_the_well(tmp_path / 'w.hdf5', TWO_D, {'velocity': velocity_2d})
    dx = TWO_D.length / 16
    with h5py.File(path, 'a') as f:
        for d in 'xy':
            f['dimensions'][d][...] = (np.arange(16) * dx).astype(np.float32)  # i L / N
    d = benchmark_description(path, 'the_well')
    assert d['convention'] == {'x': 'cell centres', 'y': 'cell centres'}
    assert d['bounds']['x'] == [pytest.approx(-dx / 2, abs=1e-6), pytest.approx(TWO_D.length - dx / 2, rel=1e-6)]


def test_walls_are_zero_flux_for_scalars_and_no_flow_for_vectors_and_partial_masks_leave_a_side_open(tmp_path):
    """Issue #31.5: WALL meant zero for every field, and a mask touching part of an edge made a wall of that side."""
    import h5py

    smoke = SmokePlume(resolution=(16, 16), steps=3)
    rng = np.random.default_rng(0)
    fields = {'velocity': rng.random((1, 4, 16, 16, 2)), 'density': rng.random((1, 4, 16, 16))}
    walls = {f'{d}_wall': ('WALL', d, 'both') for d in 'xy'}
    path = write_the_well(tmp_path / 'w.hdf5', smoke, fields, bc=walls)
    d = benchmark_description(path, 'the_well')
    assert d['boundaries']['density'] == {'x': ('zero-gradient',) * 2, 'y': ('zero-gradient',) * 2}
    assert d['boundaries']['velocity'] == {'x': ('zero',) * 2, 'y': ('zero',) * 2}
    with h5py.File(path, 'a') as f:  # a 2D mask marking only part of the lower x edge
        group = f['boundary_conditions']['x_wall']
        del group['mask']
        mask = np.zeros((16, 16), bool)
        mask[0, :8] = True
        group['mask'] = mask
        group.attrs['associated_dims'] = ['x', 'y']
    assert benchmark_description(path, 'the_well')['boundaries']['density']['x'] == ('zero-gradient', 'zero-gradient')


def test_a_field_constant_along_a_dimension_is_expanded_as_the_wells_reader_does(tmp_path, velocity_2d):
    """Issue #31.5: refused before."""
    import h5py

    from phiml_data.layouts import get_layout

    rng = np.random.default_rng(1)
    path = write_the_well(tmp_path / 'w.hdf5', TWO_D, {'velocity': velocity_2d})
    profile = rng.random((2, 16, 1)).astype(np.float32)  # varies along x only
    with h5py.File(path, 'a') as f:
        f['t0_fields'].attrs['field_names'] = ['profile']
        f['t0_fields']['profile'] = profile
        f['t0_fields']['profile'].attrs.update(
            {'dim_varying': [True, False], 'sample_varying': True, 'time_varying': False}
        )
    fields = {'velocity': 't1_fields/velocity', 'profile': 't0_fields/profile'}
    d = benchmark_description(path, 'the_well', fields)
    with h5py.File(path, 'r') as f:
        values = get_layout('the_well').read(f, d, 't0_fields/profile', 1)
    assert values.shape == (16, 16) and (values == profile[1]).all()


def test_a_staggered_scenario_field_is_not_filled_with_collocated_values(tmp_path):
    smoke = SmokePlume(resolution=(16, 16), steps=3)
    rng = np.random.default_rng(0)
    fields = {'velocity': rng.random((1, 4, 16, 16, 2)), 'density': rng.random((1, 4, 16, 16))}
    path = write_the_well(tmp_path / 'w.hdf5', smoke, fields, constant={'inflow': rng.random((1, 16, 16))})
    problems = benchmark_problems(smoke, benchmark_description(path, 'the_well'))
    assert (
        "field 'velocity' is staggered (stored on cell faces) in the scenario; benchmark files store every field "
        "collocated at the coordinates" in problems
    )


def test_pdebench_file_as_pdebench_writes_it(tmp_path, velocity_1d):
    path = write_pdebench(tmp_path / '1D_Burgers_Sols_Nu0.01.hdf5', velocity_1d, ONE_D)
    data, grid = read_pdebench(path)  # PDEBench's way of reading it sees our values and cell-centre grid
    np.testing.assert_array_equal(data[1, :, :, 0], velocity_1d[1].T)
    np.testing.assert_allclose(grid[:, 0], (np.arange(32) + 0.5) * ONE_D.length / 32, rtol=1e-6)

    built = scenario_from_benchmark(path, 'pdebench', Burgers1D)
    assert built.dt == 0.05 and built.viscosity == pytest.approx(0.01 / math.pi, rel=1e-12)
    assert cache_key(built) == cache_key(Burgers1D(resolution=32, steps=4, dt=0.05, viscosity=0.01 / math.pi))
    dm = DataManager(tmp_path / 'cache', ONE_D)
    assert import_benchmark(dm, path, 'pdebench') == [0, 1]
    np.testing.assert_array_equal(dm.load_phiml_cache(1)['velocity'].numpy('time,x,vector')[..., 0], velocity_1d[1])


def test_pdebench_every_difference_is_listed_viscosity_as_nu_over_pi(tmp_path, velocity_1d):
    path = write_pdebench(tmp_path / 'p.hdf5', velocity_1d, ONE_D)
    other = Burgers1D(resolution=64, steps=6, dt=0.1, length=1.0, viscosity=0.01)
    problems = benchmark_problems(other, benchmark_description(path, 'pdebench'))
    assert problems == [
        '5 frames; scenario has steps=6, i.e. 7 frames',
        'dt=0.05; scenario has dt=0.1',
        "resolution {'x': 32}; scenario has {'x': 64}",
        "bounds {'x': [0.0, 6.2831852]}; scenario has {'x': (0.0, 1.0)}",
        "viscosity: the file's Nu=0.01 (PDEBench: viscosity = Nu/π) means viscosity 0.003183099; scenario has 0.01",
    ]


def test_pdebench_per_seed_layout_is_refused_in_one_line(tmp_path):
    import h5py

    with h5py.File(tmp_path / '2D_diff-react_NA_NA.h5', 'w') as f:
        f['0000/data'] = np.zeros((5, 8, 8, 2), np.float32)
        f['0000/grid/x'] = np.arange(8, dtype=np.float32)
    with pytest.raises(ValueError, match=r"per-seed layout \(one group per seed such as '0000/data'") as err:
        benchmark_description(tmp_path / '2D_diff-react_NA_NA.h5', 'pdebench')
    assert '\n' not in str(err.value)


def _well_format_problems(path) -> list[str]:
    """The Well's published format rules (its documentation's data-format reference), checked on a file."""
    import h5py

    problems = []
    with h5py.File(path, 'r') as f:
        for attr in ('dataset_name', 'grid_type', 'n_spatial_dims', 'n_trajectories', 'simulation_parameters'):
            problems += [] if attr in f.attrs else [f'root attribute {attr} missing']
        problems += [
            f'parameter {p} not a root attribute' for p in f.attrs.get('simulation_parameters', []) if p not in f.attrs
        ]
        for group in ('dimensions', 'boundary_conditions', 'scalars', 't0_fields', 't1_fields', 't2_fields'):
            problems += [] if group in f else [f'group {group} missing']
        dims = list(f['dimensions'].attrs['spatial_dims'])
        problems += [] if len(dims) == f.attrs['n_spatial_dims'] else ['n_spatial_dims differs from spatial_dims']
        for name in ['time', *dims]:
            problems += (
                []
                if isinstance(f['dimensions'][name].attrs.get('sample_varying'), np.bool_)
                else [f'{name}: sample_varying']
            )
        if not f['dimensions']['time'].attrs.get('time_varying', False):  # the format checker's rule (issue #31.8)
            problems.append('/dimensions/time: time_varying must be True')
        for name, group in f['boundary_conditions'].items():
            for attr in ('associated_dims', 'associated_fields', 'bc_type', 'sample_varying', 'time_varying'):
                problems += [] if attr in group.attrs else [f'boundary {name}: {attr} missing']
            problems += [] if group.attrs['bc_type'] in ('PERIODIC', 'WALL', 'OPEN') else [f'boundary {name}: bc_type']
            problems += [] if 'mask' in group else [f'boundary {name}: mask missing']
        for group in [g for g in ('scalars', 't0_fields', 't1_fields', 't2_fields') if g in f]:
            for name in f[group].attrs['field_names']:
                attrs = f[group][name].attrs
                wanted = ('sample_varying', 'time_varying') + (('dim_varying',) if group != 'scalars' else ())
                problems += [f'{group}/{name}: {a}' for a in wanted if a not in attrs]
    return problems


def test_our_well_fixture_follows_the_well_format_rules(tmp_path, velocity_2d):
    path = write_the_well(
        tmp_path / 'w.hdf5', TWO_D, {'velocity': velocity_2d}, constant={'c': velocity_2d[:, 0, ..., 0]}
    )
    assert _well_format_problems(path) == []
    import h5py

    with h5py.File(path, 'a') as f:  # the rules catch what the old fixture lacked
        del f['scalars'], f['boundary_conditions/x_periodic/mask']
        f['boundary_conditions/y_periodic'].attrs['bc_type'] = 'periodic'
    assert _well_format_problems(path) == [
        'group scalars missing',
        'boundary x_periodic: mask missing',
        'boundary y_periodic: bc_type',
    ]


@pytest.mark.parametrize(
    'variant',
    [
        {'bc': {'x0_wall': ('WALL', 'x', 'lower'), 'xL_open': ('OPEN', 'x', 'upper'), 'y': ('PERIODIC', 'y', 'both')}},
        {'time_per_trajectory': True},
        {'points': True},
    ],
)
def test_the_wells_reader_reads_every_fixture_variant_we_import(tmp_path, velocity_2d, variant):
    """Each layout variant the importer tests use is a file The Well's own reader accepts, with the same values."""
    well = pytest.importorskip('the_well.data')
    write_the_well(tmp_path / 'v.hdf5', TWO_D, {'velocity': velocity_2d}, **variant)
    ds = well.WellDataset(path=str(tmp_path), n_steps_input=1, full_trajectory_mode=True, use_normalization=False)
    np.testing.assert_array_equal(ds[0]['output_fields'].numpy(), velocity_2d[0, 1:])
    if 'bc' in variant:  # The Well's codes: WALL 0, OPEN 1, PERIODIC 2; (lower, upper) per axis
        assert ds[0]['boundary_conditions'].tolist() == [[0, 1], [2, 2]]
