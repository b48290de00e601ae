"""Benchmark files written exactly as their projects write them, and a PDEBench-style loader, for the importer tests.

- `write_pdebench`: as PDEBench's generator (`Data_Merge.py`) writes a Burgers file: float32 `tensor [N, T, X]`,
  float32 cell-centre `x-coordinate`, float32 `t-coordinate` one entry longer than the frames, attribute `Nu`, `.hdf5`.
- `read_pdebench`: follows what PDEBench's FNO / U-Net loaders do (our own code, not theirs): a `.h5` name means the
  per-seed layout; otherwise `tensor` `[N, T, X]` is read and moved to `[N, X, T, 1]` next to the `x-coordinate` grid.
- `write_the_well`: The Well's full layout, as its `WellDataset` and format rules expect it.
"""

import math
from pathlib import Path

import h5py
import numpy as np


def write_pdebench(path, data, scenario, nu=None):
    """`data [N, T, X]` of a 1D scenario as PDEBench writes it; `nu`: the file's `Nu` (default: scenario.viscosity·π)."""
    n, dx = scenario.resolution[0], scenario.length / scenario.resolution[0]
    with h5py.File(path, 'w') as f:
        f['tensor'] = np.asarray(data, np.float32)
        f['x-coordinate'] = ((np.arange(n) + 0.5) * dx).astype(np.float32)
        f['t-coordinate'] = (np.arange(scenario.frames + 1) * scenario.dt).astype(np.float32)
        f.attrs['Nu'] = scenario.viscosity * math.pi if nu is None else nu
    return path


def read_pdebench(path):
    """`(data [N, X, T, 1], x grid [X, 1])` the way PDEBench's training code reads a merged 1D file."""
    if Path(path).suffix == '.h5':
        raise ValueError(f"{path}: PDEBench reads .h5 files as its per-seed layout")
    with h5py.File(path, 'r') as f:
        data = np.transpose(np.asarray(f['tensor'], np.float32), (0, 2, 1))[..., None]
        grid = np.asarray(f['x-coordinate'], np.float32)[:, None]
    return data, grid


def write_the_well(path, scenario, fields: dict, constant: dict = (), bc=None, points=False, time_per_trajectory=False):
    """A The Well file of a 2D scenario.

    Args:
        fields: `{name: array [N, T, X, Y] (scalar) or [N, T, X, Y, 2] (vector)}` (time-varying).
        constant: `{name: array [N, X, Y]}` time-constant scalar fields (`t0_fields`, `time_varying=False`).
        bc: `{group name: (bc_type, dim, sides)}` with sides `'both'`, `'lower'` or `'upper'`; default periodic.
        points: Coordinates on both domain ends (`linspace(0, L, n)`, as The Well's reference writer) instead of
            cell centres.
        time_per_trajectory: Store `time` as `[N, T]` (`sample_varying`).
    """
    bc = bc or {f'{d}_periodic': ('PERIODIC', d, 'both') for d in scenario.spatial_dims}
    n = len(next(iter(fields.values())))
    with h5py.File(path, 'w') as f:
        f.attrs.update(
            {
                'dataset_name': 'phiml_data_test',
                'grid_type': 'cartesian',
                'n_spatial_dims': len(scenario.spatial_dims),
                'n_trajectories': n,
                'simulation_parameters': ['length'],
                'length': scenario.length,
            }
        )
        dims = f.create_group('dimensions')
        dims.attrs['spatial_dims'] = list(scenario.spatial_dims)
        time = (np.arange(scenario.frames) * scenario.dt).astype(np.float32)
        dims['time'] = np.tile(time, (n, 1)) if time_per_trajectory else time
        dims['time'].attrs.update({'sample_varying': time_per_trajectory, 'time_varying': True})
        coords = {}
        for d, size in scenario.grid_size.items():
            step = scenario.length / (size - 1 if points else size)
            coords[d] = ((np.arange(size) + (0 if points else 0.5)) * step).astype(np.float32)
            dims[d] = coords[d]
            dims[d].attrs.update({'sample_varying': False, 'time_varying': False})
        group = f.create_group('boundary_conditions')
        for name, (kind, d, sides) in bc.items():
            mask = np.zeros(len(coords[d]), bool)
            mask[[0, -1] if sides == 'both' else [0] if sides == 'lower' else [-1]] = True
            g = group.create_group(name)
            g.attrs.update(
                {
                    'associated_dims': [d],
                    'associated_fields': [],
                    'bc_type': kind,
                    'sample_varying': False,
                    'time_varying': False,
                }
            )
            g['mask'] = mask
        scalars = f.create_group('scalars')
        scalars.attrs['field_names'] = ['length']
        scalars['length'] = np.array(scenario.length)
        scalars['length'].attrs.update({'sample_varying': False, 'time_varying': False})
        orders = {0: dict(constant), 1: {}}
        for name, values in fields.items():
            orders[1 if np.ndim(values) == 5 else 0][name] = values
        for order in (0, 1, 2):
            g = f.create_group(f't{order}_fields')
            g.attrs['field_names'] = list(orders.get(order, {}))
            for name, values in orders.get(order, {}).items():
                g[name] = np.asarray(values, np.float32)
                g[name].attrs.update(
                    {
                        'dim_varying': [True] * len(coords),
                        'sample_varying': True,
                        'time_varying': name not in dict(constant),
                    }
                )
    return path


def _pdebench_fixture(folder):
    from phiml_data import Burgers1D, simulate

    scenario = Burgers1D(resolution=32, steps=4, viscosity=0.01 / math.pi)
    sims = simulate(scenario, [0, 1])
    data = np.stack([s['velocity'].numpy('time,x,vector')[..., 0] for s in sims])
    return scenario, write_pdebench(Path(folder) / '1D_Burgers_Sols_Nu0.01.hdf5', data, scenario), sims


def _the_well_fixture(folder):
    from phiml_data import Burgers2D, simulate

    scenario = Burgers2D(resolution=16, steps=3)
    sims = simulate(scenario, [0, 1])
    data = np.stack([s['velocity'].numpy('time,x,y,vector') for s in sims])
    return scenario, write_the_well(Path(folder) / 'burgers.hdf5', scenario, {'velocity': data}), sims


LAYOUT_FIXTURES = {'pdebench': _pdebench_fixture, 'the_well': _the_well_fixture}
"""Per registered layout: `writer(folder) -> (scenario, file, [{field: Tensor} per trajectory])`, the contract test's
input (`tests/test_registries.py`)."""
