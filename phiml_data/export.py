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
import os
import shutil
import tempfile
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


def export(manager, path, fmt: str = 'netcdf', sims=None, overwrite: bool = False) -> Path:
    """Writes `to_xarray(manager, sims)` to `path` as netCDF-4 (`fmt="netcdf"`, via h5netcdf) or a Zarr v2 store.

    The export is written to a temporary sibling of `path` and renamed into place when complete, so a failed write
    (disk full, file-size limit, a crash) leaves whatever `path` held before untouched. An existing `path` is
    replaced only if it is an earlier export of this package (or an empty folder), or with `overwrite=True`; a
    cache directory, or a folder holding one, is never replaced.

    Raises:
        ValueError: `path` is taken by something else (says how to overwrite), or is or holds a cache directory.
        OSError: The write failed; the message names `path`, and nothing at `path` changed.

    Example:
        >>> dm = DataManager(tmp, Burgers2D(resolution=16, steps=2))
        >>> _ = dm.generate(1, progress=False)
        >>> _ = export(dm, tmp / 'out.nc')
        >>> _ = export(dm, tmp / 'out.nc')  # an earlier export is replaced
        >>> export(dm, dm.directory / 'x.nc')
        Traceback (most recent call last):
        ...
        ValueError: Refusing to export into the cache directory ...
    """
    if fmt not in ('netcdf', 'zarr'):
        raise ValueError(f"export format must be 'netcdf' or 'zarr', got {fmt!r}")
    path = Path(path).absolute()
    _check_target(path, Path(manager.directory).absolute(), overwrite)
    ds = to_xarray(manager, sims)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent))
    try:
        if fmt == 'netcdf':  # built in memory: a failing write is a plain OSError, not a crash inside HDF5
            image = ds.to_netcdf(engine='h5netcdf')
            tmp.rmdir()
            with open(tmp, 'wb') as f:
                f.write(image)
        else:  # v2: string coordinates and consolidated metadata are standard there
            ds.to_zarr(tmp, mode='w', zarr_format=2)
        _replace(tmp, path)
    except OSError as err:
        raise OSError(err.errno, f"Cannot write {path} (nothing there was changed): {err.strerror or err}") from None
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    return path


def _check_target(path: Path, cache: Path, overwrite: bool):
    """Refuses targets this export does not own: see `export`."""
    if path == cache or cache.is_relative_to(path) or path.is_relative_to(cache):
        raise ValueError(f"Refusing to export into the cache directory {cache} or a folder that holds it: {path}")
    if path.is_dir() and ((path / 'config.json').exists() or any(path.glob('*/config.json'))):
        raise ValueError(f"Refusing to replace {path}: it is or holds a cache directory (config.json)")
    if not os.path.lexists(path) or overwrite or _is_our_export(path):
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    raise ValueError(
        f"{path} exists and is not an export of phiml_data; choose another path, or replace it with "
        f"overwrite=True (CLI: export ... --overwrite)"
    )


def _is_our_export(path: Path) -> bool:
    """Whether `path` is a netCDF file or Zarr v2 store written by `export` (global attribute `source`)."""
    try:
        if path.is_dir():
            return json.loads((path / '.zattrs').read_text()).get('source') == 'phiml_data'
        import h5py

        with h5py.File(path, 'r') as f:
            return f.attrs.get('source') in ('phiml_data', b'phiml_data')
    except (OSError, ValueError, AttributeError):
        return False


def _replace(new: Path, path: Path):
    """Renames `new` to `path`; an existing folder is first moved aside and deleted only after the rename."""
    if path.is_dir() and not path.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', suffix='.old', dir=path.parent))
        os.replace(path, old / path.name)
        os.replace(new, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, path)
