"""On-disk formats of one cached simulation: self-describing HDF5 (default) and PhiML's `.npz`.

HDF5 layout (one file per simulation), readable with plain h5py:

| where                  | what                                                                              |
|------------------------|-----------------------------------------------------------------------------------|
| dataset `root[FIELD]`  | the field's values, axes in the order of attribute `dims`, chunked one frame each |
| dataset attrs          | `dims`, `dim_types` (comma-separated), `item_names` (JSON), `sha256` of the bytes |
| file attr `metadata`   | JSON: scenario, parameters, sim index, dt, bounds, resolution, per-field grid info |
| file attr `format`     | `phiml_data-h5` and `format_version`                                              |
| file attrs `root[FIELD]_shape/_names/_dtype`, `content_hierarchy` | what `phiml.math._tree.load_h5` reads  |

Files are written to a temporary name in the same directory and renamed into place, so a crash never leaves a
half-written file under the final name.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from phiml import math
from phiml.math import Shape, Tensor
from phiml.math._shape import to_spec_str  # the shape spec PhiML's own HDF5 reader parses

FORMAT_VERSION = 1
_DIM_TYPES = {'batch': math.batch, 'spatial': math.spatial, 'channel': math.channel, 'instance': math.instance, 'dual': math.dual}


class CacheError(ValueError):
    """A cache file is missing, truncated, corrupted, or belongs to another configuration."""


def dataset_name(field: str) -> str:
    """HDF5 dataset name of `field`, as PhiML's `load_h5` expects it."""
    return f'root[{field}]'


def shape_attrs(shape: Shape) -> dict[str, str]:
    """Self-describing attributes of a field's dataset: `dims`, `dim_types`, `item_names` (JSON)."""
    items = {d.name: list(d.item_names[0]) for d in shape if d.item_names[0]}
    return {'dims': ','.join(shape.names), 'dim_types': ','.join(shape.dim_types), 'item_names': json.dumps(items)}


def shape_from_attrs(dims: str, dim_types: str, item_names: str, sizes: tuple) -> Shape:
    """Rebuilds a PhiML `Shape` from the dataset attributes written by `write_h5` and the array's sizes."""
    names = [n for n in dims.split(',') if n]
    types = [t for t in dim_types.split(',') if t]
    items = json.loads(item_names)
    if len(names) != len(sizes) or len(types) != len(sizes):
        raise ValueError(f"dims {names} / dim_types {types} do not match array rank {len(sizes)}")
    parts = [_DIM_TYPES[t](**{n: ','.join(items[n]) if n in items else s}) for n, t, s in zip(names, types, sizes)]
    return math.concat_shapes(*parts)


def array_of(t: Tensor) -> np.ndarray:
    """The NumPy array of `t` in the order of its own shape (no copy when already in that order)."""
    return np.ascontiguousarray(t.numpy(t.shape.names))


def _manifest_entry(t: Tensor, array: np.ndarray) -> dict:
    return {'shape': to_spec_str(t.shape), 'dtype': str(array.dtype), 'sha256': checksum(array)}


def checksum(array: np.ndarray) -> str:
    """SHA-256 of the array's bytes (C order)."""
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _atomic_path(path: Path):
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_h5(path: Path, fields: dict[str, Tensor], metadata: dict) -> dict[str, dict]:
    """Writes one simulation atomically; returns `{field: {'shape', 'dtype', 'sha256'}}` for the manifest."""
    import h5py
    path = Path(path)
    tmp = _atomic_path(path)
    entries = {}
    try:
        with h5py.File(tmp, 'w') as f:
            f.attrs['format'] = 'phiml_data-h5'
            f.attrs['format_version'] = FORMAT_VERSION
            f.attrs['metadata'] = json.dumps(metadata)
            f.attrs['content_hierarchy'] = '{' + ','.join(f'{k}=D' for k in fields) + '}'
            for name, t in fields.items():
                array = array_of(t)
                chunks = (1, *array.shape[1:]) if t.shape.names[0] == 'time' and array.ndim > 1 else None
                ds = f.create_dataset(dataset_name(name), data=array, chunks=chunks, track_times=False)  # same data, same bytes
                entries[name] = _manifest_entry(t, array)
                ds.attrs.update({**shape_attrs(t.shape), 'sha256': entries[name]['sha256']})
                f.attrs[dataset_name(name) + '_shape'] = entries[name]['shape']  # the three attrs PhiML's load_h5 reads
                f.attrs[dataset_name(name) + '_names'] = ','.join(t.shape.names)
                f.attrs[dataset_name(name) + '_dtype'] = entries[name]['dtype']
            f.flush()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return entries


def open_h5(path: Path, **kwargs):
    """Opens a cache file read-only, turning h5py's errors into a `CacheError` that names the file.

    `kwargs` go to `h5py.File` (e.g. `rdcc_nbytes=0` to skip the chunk cache for whole-frame reads).
    """
    import h5py
    try:
        f = h5py.File(path, 'r', **kwargs)
    except FileNotFoundError:
        raise CacheError(f"Cache file {path} does not exist.") from None
    except OSError as err:
        raise CacheError(f"Cache file {path} is truncated or not an HDF5 file ({err}).") from None
    if f.attrs.get('format') != 'phiml_data-h5':
        f.close()
        raise CacheError(f"Cache file {path} is not a phiml_data cache file (attribute 'format' missing).")
    return f


def read_h5(path: Path, fields=None, expected: dict = None, check=None) -> tuple[dict[str, Tensor], dict]:
    """Reads fields and metadata of one simulation file.

    Each field's bytes are hashed once and compared with `expected[field]` (the manifest's SHA-256) if given,
    else with the digest stored in the file. `check(metadata)` runs before any field is read.
    """
    path = Path(path)
    with open_h5(path) as f:
        metadata = json.loads(f.attrs['metadata'])
        if check:
            check(metadata)
        available = [k[5:-1] for k in f.keys() if k.startswith('root[')]
        result = {}
        for name in (available if fields is None else fields):
            if name not in available:
                raise CacheError(f"Cache file {path} has no field '{name}' (it has {sorted(available)}).")
            ds = f[dataset_name(name)]
            try:
                array = ds[()]
            except OSError as err:
                raise CacheError(f"Cache file {path}: field '{name}' cannot be read, the file is truncated or corrupted ({err}).") from None
            _verify(path, name, array, (expected or {}).get(name) or ds.attrs['sha256'])
            result[name] = math.tensor(array, shape_from_attrs(ds.attrs['dims'], ds.attrs['dim_types'], ds.attrs['item_names'], array.shape))
    return result, metadata


def _verify(path, name, array, digest):
    if checksum(array) != digest:
        raise CacheError(f"Cache file {path}: field '{name}' fails its checksum (manifest / file digest), the file is corrupted or was replaced.")


def write_npz(path: Path, fields: dict[str, Tensor], metadata: dict) -> dict[str, dict]:
    """Writes one simulation with `phiml.math.save` (uncompressed `.npz`), atomically."""
    path = Path(path)
    tmp = _atomic_path(path)
    try:
        math.save(str(tmp), {'fields': fields, 'metadata': json.dumps(metadata), 'format_version': FORMAT_VERSION})
        os.replace(str(tmp) + '.npz', path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + '.npz').unlink(missing_ok=True)
    return {name: _manifest_entry(t, array_of(t)) for name, t in fields.items()}


def read_npz(path: Path, fields=None, expected: dict = None, check=None) -> tuple[dict[str, Tensor], dict]:
    """Reads a `.npz` simulation with `phiml.math.load`. Caveat: PhiML's loader unpickles, so only read your own files."""
    path = Path(path)
    if not path.exists():
        raise CacheError(f"Cache file {path} does not exist.")
    try:
        data = math.load(str(path))
    except Exception as err:
        raise CacheError(f"Cache file {path} is truncated or corrupted ({type(err).__name__}: {err}).") from None
    metadata = json.loads(data['metadata'])
    if check:
        check(metadata)
    available = data['fields']
    fields = list(available) if fields is None else fields
    missing = [k for k in fields if k not in available]
    if missing:
        raise CacheError(f"Cache file {path} has no field {missing} (it has {sorted(available)}).")
    for k in fields:
        if (expected or {}).get(k):
            _verify(path, k, array_of(available[k]), expected[k])
    return {k: available[k] for k in fields}, metadata
