"""Zarr v3 in a zip file (`sim_000000.zarr.zip`), one frame per chunk, uncompressed: a second format with partial reads.

| where                    | what                                                                                  |
|--------------------------|---------------------------------------------------------------------------------------|
| array `<field>`          | the field's values, axes in the order of attribute `dims`, chunk = one frame          |
| array attributes         | `dims`, `dim_types`, `item_names`, `shape` (PhiML spec), `frame_xxh3` (hex per frame) |
| group attributes         | `format` = `phiml_data-zarr`, `format_version`, `metadata` (as in the HDF5 format)    |

One zip file per sim keeps what the manager relies on for every format: an atomic rename, a size, and a file identity
(inode, size, modification time). Readable with `zarr.open_group(zarr.storage.ZipStore(path, mode='r'))` and, after
unzipping, by any Zarr v3 reader (xarray, tensorstore). Needs the `zarr` extra (`pip install phiml_data[zarr]`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import CacheError, FieldInfo, Format, Reader, parse_shape_spec, register, shape_spec


def _zarr():
    try:
        import zarr
        from zarr.storage import ZipStore
    except ImportError:
        raise ImportError("The 'zarr' cache format needs the zarr package: pip install 'phiml_data[zarr]'") from None
    return zarr, ZipStore


@register
class Zarr(Format):
    name = 'zarr'
    suffix = '.zarr.zip'
    handle_bytes = 64 * 2**10  # an open zip store and its array objects

    def _write(self, tmp, fields, header):
        zarr, ZipStore = _zarr()
        store = ZipStore(tmp, mode='w')
        try:
            group = zarr.create_group(
                store=store, attributes=header
            )  # attributes at creation: a zip entry is written once
            for name, (shape, array, checksums) in fields.items():
                chunks = (1, *array.shape[1:]) if shape.names[0] == 'time' and array.ndim > 1 else array.shape
                items = {d.name: list(d.item_names[0]) for d in shape if d.item_names[0]}
                attributes = {
                    'dims': ','.join(shape.names),
                    'dim_types': ','.join(shape.dim_types),
                    'item_names': items,
                    'shape': shape_spec(shape),
                    'frame_xxh3': [f'{int(c):016x}' for c in checksums],
                }
                z = group.create_array(
                    name,
                    shape=array.shape,
                    chunks=chunks,
                    dtype=array.dtype,
                    compressors=None,
                    filters=None,
                    attributes=attributes,
                )
                z[...] = array
        finally:
            store.close()

    def open(self, path, allow_pickle=False):
        return ZarrReader(Path(path))


class ZarrReader(Reader):
    """An open zip store; `read` reads only the chunks (frames) it is asked for."""

    def __init__(self, path: Path):
        zarr, ZipStore = _zarr()
        self.path = path
        if not path.exists():
            raise CacheError(f"Cache file {path} does not exist.")
        try:
            self._store = ZipStore(path, mode='r')
            group = zarr.open_group(store=self._store, mode='r')
            attrs = dict(group.attrs)
            self.header = {
                'format': attrs['format'],
                'format_version': int(attrs['format_version']),
                'metadata': attrs['metadata'],
            }
            self._arrays = {name: a for name, a in group.arrays()}
            self.fields = {
                name: FieldInfo(
                    parse_shape_spec(a.attrs['shape']),
                    str(a.dtype),
                    np.array([int(c, 16) for c in a.attrs['frame_xxh3']], np.uint64),
                )
                for name, a in self._arrays.items()
            }
        except CacheError:
            raise
        except Exception as err:  # zipfile.BadZipFile, KeyError of a missing attribute, zarr's own errors
            raise CacheError(
                f"Cache file {path} is truncated, corrupted or not a phiml_data zarr file ({type(err).__name__}: {err})."
            ) from None

    def read(self, field, start=None, stop=None, out=None):
        a = self._arrays[field]
        try:
            values = a[...] if start is None and stop is None else a[start:stop]
        except Exception as err:  # zipfile.BadZipFile (a chunk's CRC), zarr's own decoding errors
            raise CacheError(
                f"Cache file {self.path}: field '{field}' {_frames(start, stop)} cannot be read, the file is corrupted "
                f"({type(err).__name__}: {err})."
            ) from None
        if out is None:
            return np.ascontiguousarray(values)
        out[...] = values
        return out

    def close(self):
        self._store.close()


def _frames(start, stop) -> str:
    return 'all frames' if start is None and stop is None else f'frames {start}:{stop}'
