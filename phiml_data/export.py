"""Export of a cache to xarray (netCDF or zarr), with dims, cell-centre coordinates, time and metadata attributes.

Part of step 2 of the pipeline (scenarios -> manager (cache) -> dataset -> trainer), for tools outside PhiML
(xarray, ParaView via netCDF, other groups' loaders). Needs the `xarray` extra (`xarray`, `h5netcdf`); zarr output
also the `zarr` extra.

The dataset has one variable per field with dims `(sim, time, x, [y], [vector])` (static fields without `time`),
coordinates `sim` (indices), `time` (`frame * dt`), `x` / `y` (cell centres from the bounds), `vector` (component
names), and attributes: the scenario's parameters and identity, the cache key, and per variable its grid type,
boundary and whether it is static. Staggered fields are exported as stored: on the lower faces of the cells.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def to_xarray(manager, sims=None):
    """The cached sims `sims` (default: all) of `manager` as an `xarray.Dataset`, read and verified sim by sim.

    Example:
        >>> dm = DataManager(tmp, Burgers2D(resolution=16, steps=4))
        >>> _ = dm.generate(2, progress=False)
        >>> ds = to_xarray(dm)
        >>> dict(ds['velocity'].sizes), float(ds['time'][-1])
        ({'sim': 2, 'time': 5, 'x': 16, 'y': 16, 'vector': 2}, 0.2)
    """
    import xarray as xr

    scenario = manager.scenario
    sims = manager.cached_indices() if sims is None else [int(s) for s in sims]
    if not sims:
        raise ValueError(f"Nothing to export: no sims cached in {manager.directory}")
    data = [manager.load_phiml_cache(s) for s in sims]
    variables = {}
    for name, spec in scenario.fields.items():
        shape = scenario.field_shape(name)
        values = np.stack([sim[name].numpy(shape.names) for sim in data])
        attrs = {'grid': spec.grid, 'boundary': spec.boundary, 'static': int(spec.static)}
        if spec.grid == 'staggered':
            attrs['note'] = (
                'staggered: component d holds the values on the lower d-faces of the cells (x = i dx along d)'
            )
        variables[name] = (('sim', *shape.names), values, attrs)
    coords = {
        'sim': sims,
        'time': ('time', np.arange(scenario.frames) * scenario.dt, {'units': 'simulation time units'}),
    }
    for d, n in scenario.grid_size.items():
        lower, upper = scenario.bounds[d]
        coords[d] = (
            d,
            lower + (np.arange(n) + 0.5) * (upper - lower) / n,
            {'units': 'domain units', 'long_name': f'cell centre {d}'},
        )
    if any(spec.vector for spec in scenario.fields.values()):
        coords['vector'] = list(scenario.spatial_dims)
    attrs = {
        'scenario': scenario.name,
        'params': json.dumps(scenario.params()),
        'identity': json.dumps(scenario.identity()),
        'cache_key': manager.key,
        'dt': scenario.dt,
        'source': 'phiml_data',
    }
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def export(manager, path, fmt: str = 'netcdf', sims=None) -> Path:
    """Writes `to_xarray(manager, sims)` to `path` as netCDF-4 (`fmt="netcdf"`, via h5netcdf) or a Zarr v2 store."""
    if fmt not in ('netcdf', 'zarr'):
        raise ValueError(f"export format must be 'netcdf' or 'zarr', got {fmt!r}")
    ds = to_xarray(manager, sims)
    path = Path(path)
    if fmt == 'netcdf':
        ds.to_netcdf(path, engine='h5netcdf')
    else:
        ds.to_zarr(path, mode='w', zarr_format=2)  # v2: string coordinates and consolidated metadata are standard there
    return path
