"""Export of a cache to xarray (netCDF or zarr) following the CF-1.8 conventions, with exact coordinates per grid.

Part of step 2 of the pipeline (scenarios -> manager (cache) -> dataset -> trainer), for tools outside PhiML
(xarray, ParaView via netCDF, other groups' loaders). Needs the `xarray` extra (`xarray`, `h5netcdf`); zarr output
also the `zarr` extra. The netCDF files pass the IOOS `compliance-checker` for CF-1.8 without a message
(`tests/test_export.py` runs it).

Layout of the dataset:

- One variable per field with dims `(sim, t, x, [y], [vector])`; static fields have no `t`. A vector field on a
  staggered grid is split into one variable per component, `velocity_x (sim, t, x_face, y)` and
  `velocity_y (sim, t, x, y_face)`, each on the coordinates where its values live, so interpolating on the exported
  coordinates is exact.
- Coordinates: `sim` (indices), `t` (`frame * dt`; nondimensional, hence not a CF time axis, which needs a calendar
  epoch), `x` / `y` (cell centres), `x_face` / `y_face` (lower cell faces, only with staggered fields), and the label
  coordinate `component (vector)` naming the vector components. Units are `"1"`: the scenarios are nondimensional.
- Attributes: `Conventions`, `title`, `history`, `source` (`phiml_data`), the scenario's parameters and identity,
  the cache key, `dt`; per variable `long_name`, grid type, boundary and whether it is static.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .cache import Cache, cache_of


def to_xarray(cache: Cache, sims=None):
    """The cached sims `sims` (default: all) of a `Cache` (or `DataManager`) as a CF-1.8 `xarray.Dataset`, read and
    verified sim by sim.

    Example:
        >>> dm = DataManager(tmp, Burgers2D(resolution=16, steps=4))
        >>> _ = dm.generate(2, progress=False)
        >>> ds = to_xarray(dm)
        >>> dict(ds['velocity'].sizes), float(ds['t'][-1]), ds['component'].values.tolist()
        ({'sim': 2, 't': 5, 'x': 16, 'y': 16, 'vector': 2}, 0.2, ['x', 'y'])
    """
    cache = cache_of(cache)
    import xarray as xr

    scenario = cache.scenario
    sims = cache.cached_indices() if sims is None else [int(s) for s in sims]
    if not sims:
        raise ValueError(f"Nothing to export: no sims cached in {cache.directory}")
    variables = {}
    for name, spec in scenario.fields.items():
        shape = scenario.field_shape(name)
        values = np.stack([_read(cache, s, name) for s in sims])
        dims = ['sim', *('t' if n == 'time' else n for n in shape.names)]
        attrs = {'units': '1', 'grid': spec.grid, 'boundary': spec.boundary, 'static': int(spec.static)}
        if spec.grid != 'staggered':
            variables[name] = (dims, values, {'long_name': name.replace('_', ' '), **attrs})
            continue
        for i, d in enumerate(scenario.spatial_dims):  # component d lives on the d-faces of the cells
            faces = [f'{d}_face' if n == d else n for n in dims[:-1]]
            long_name = f"{name.replace('_', ' ')}, {d} component, on the {d} faces of the cells"
            variables[f'{name}_{d}'] = (
                faces,
                _with_upper_face(values[..., i], dims.index(d), spec.boundary),
                {'long_name': long_name, **attrs},
            )
    ds = xr.Dataset(variables, coords=_coordinates(scenario, sims), attrs=_attributes(cache))
    for name in ds.variables:  # coordinates must not have a fill value (CF 2.5.1); the data need none
        ds[name].encoding['_FillValue'] = None
    if 'component' in ds.coords:  # a char array: NC_STRING is not a CF type (cfchecker, 2.2)
        ds['component'].encoding['dtype'] = 'S1'
    return ds


def _with_upper_face(values: np.ndarray, axis: int, boundary: str) -> np.ndarray:
    """The cached lower faces of a staggered component plus the domain's upper face along `axis` (a wall: zero normal
    velocity; periodic: the lower face again), so that every cell has both of its faces and interpolating on the
    exported coordinates works in the last cell too."""
    first = np.take(values, [0], axis=axis)
    upper = first if boundary == 'periodic' else np.zeros_like(first)
    return np.concatenate([values, upper], axis=axis)


def _read(cache: Cache, sim: int, field: str) -> np.ndarray:
    """One field of one sim, verified, axes in the canonical order `(time, x, [y], [vector])`."""
    with cache.open_sim(sim) as f:
        return np.asarray(f.tensor(field).numpy(cache.scenario.field_shape(field).names))


def _coordinates(scenario, sims: list[int]) -> dict:
    """CF coordinates: sims, nondimensional time, cell centres and (with staggered fields) lower faces, labels."""
    coords = {
        'sim': ('sim', np.asarray(sims, np.int32), {'long_name': 'simulation index', 'units': '1'}),
        't': (
            't',
            np.arange(scenario.frames) * scenario.dt,
            {'long_name': 'nondimensional time (frame * dt)', 'units': '1'},
        ),
    }
    staggered = any(spec.grid == 'staggered' for spec in scenario.fields.values())
    for d, n in scenario.grid_size.items():
        lower, upper = scenario.bounds[d]
        dx = (upper - lower) / n
        coords[d] = (d, lower + (np.arange(n) + 0.5) * dx, {'long_name': f'{d} at the cell centres', 'units': '1'})
        if staggered:  # every face, both domain ends included
            coords[f'{d}_face'] = (
                f'{d}_face',
                lower + np.arange(n + 1) * dx,
                {'long_name': f'{d} at the cell faces', 'units': '1'},
            )
    if any(spec.vector and spec.grid != 'staggered' for spec in scenario.fields.values()):
        coords['component'] = ('vector', list(scenario.spatial_dims), {'long_name': 'vector component'})
    return coords


def _attributes(cache: Cache) -> dict:
    scenario = cache.scenario
    return {
        'Conventions': 'CF-1.8',
        'title': f"{scenario.name} simulations exported from a phiml_data cache",
        'history': f"phiml_data.export of cache {cache.key}",
        'source': 'phiml_data',
        'scenario': scenario.name,
        'params': json.dumps(scenario.params()),
        'identity': json.dumps(scenario.identity()),
        'cache_key': cache.key,
        'dt': scenario.dt,
    }


def export(cache: Cache, path, fmt: str = 'netcdf', sims=None, overwrite: bool = False) -> Path:
    """Writes `to_xarray(cache, sims)` to `path` as netCDF-4 (`fmt="netcdf"`, via h5netcdf) or a Zarr v2 store.

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
    cache = cache_of(cache)
    if fmt not in ('netcdf', 'zarr'):
        raise ValueError(f"export format must be 'netcdf' or 'zarr', got {fmt!r}")
    path = Path(path).absolute()
    _check_target(path, Path(cache.directory).absolute(), overwrite)
    ds = to_xarray(cache, sims)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent))
    except OSError as err:
        raise OSError(err.errno, f"Cannot write {path} (nothing there was changed): {err.strerror or err}") from None
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
