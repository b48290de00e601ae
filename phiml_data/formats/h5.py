"""Self-describing HDF5, one file per simulation (the default format).

| where                  | what                                                                              |
|------------------------|-----------------------------------------------------------------------------------|
| dataset `root[FIELD]`  | the field's values, axes in the order of attribute `dims`, chunked one frame each |
| dataset attrs          | `dims`, `dim_types` (comma-separated), `item_names` (JSON), `frame_crc32` (uint32 per frame) |
| file attrs             | `format` = `phiml_data-h5`, `format_version`, `metadata` (JSON: scenario, identity, sim index, grid) |
| file attrs `root[FIELD]_shape/_names/_dtype`, `content_hierarchy` | what `phiml.math._tree.load_h5` reads  |

Readable with plain h5py and by PhiML's own `phiml.math._tree.load_h5`; nothing is pickled.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .base import CacheError, FieldInfo, Format, Reader, parse_shape_spec, register


def dataset_name(field: str) -> str:
    """HDF5 dataset name of `field`, as PhiML's `load_h5` expects it."""
    return f'root[{field}]'


@register
class H5(Format):
    name = 'h5'
    suffix = '.h5'
    handle_bytes = 700 * 2 ** 10  # RSS of one open file with its dataset handles (measured, h5py 3.16)

    def _write(self, tmp, fields, header):
        import h5py
        with h5py.File(tmp, 'w') as f:
            f.attrs['format'] = header['format']
            f.attrs['format_version'] = header['format_version']
            f.attrs['metadata'] = json.dumps(header['metadata'])
            f.attrs['content_hierarchy'] = '{' + ','.join(f'{k}=D' for k in fields) + '}'
            for name, (shape, array, crcs) in fields.items():
                chunks = (1, *array.shape[1:]) if shape.names[0] == 'time' and array.ndim > 1 else None
                ds = f.create_dataset(dataset_name(name), data=array, chunks=chunks, track_times=False)  # same data, same bytes
                items = {d.name: list(d.item_names[0]) for d in shape if d.item_names[0]}
                ds.attrs.update({'dims': ','.join(shape.names), 'dim_types': ','.join(shape.dim_types),
                                 'item_names': json.dumps(items), 'frame_crc32': crcs})
                from .base import shape_spec
                f.attrs[dataset_name(name) + '_shape'] = shape_spec(shape)  # the three attrs PhiML's load_h5 reads
                f.attrs[dataset_name(name) + '_names'] = ','.join(shape.names)
                f.attrs[dataset_name(name) + '_dtype'] = str(array.dtype)

    def open(self, path, allow_pickle=False):
        return H5Reader(Path(path))


class H5Reader(Reader):
    """Open HDF5 cache file; `read` slices only the requested frames (no chunk cache: chunks are whole frames)."""

    def __init__(self, path: Path):
        import h5py
        self.path = path
        try:
            self._file = h5py.File(path, 'r', rdcc_nbytes=0)
        except FileNotFoundError:
            raise CacheError(f"Cache file {path} does not exist.") from None
        except OSError as err:
            raise CacheError(f"Cache file {path} is truncated or not an HDF5 file ({err}).") from None
        try:
            self.header, self.fields, self._datasets = self._describe()
        except BaseException:
            self._file.close()
            raise

    def _describe(self):
        attrs = self._file.attrs
        missing = [a for a in ('format', 'format_version', 'metadata') if a not in attrs]
        if missing:
            raise CacheError(f"Cache file {self.path} is not a complete phiml_data cache file (attribute(s) {missing} missing).")
        try:
            header = {'format': str(attrs['format']), 'format_version': int(attrs['format_version']), 'metadata': json.loads(attrs['metadata'])}
        except (ValueError, TypeError) as err:
            raise CacheError(f"Cache file {self.path}: attribute 'metadata' is not valid JSON ({err}).") from None
        fields, datasets = {}, {}
        for key in self._file.keys():
            if not (key.startswith('root[') and key.endswith(']')):
                continue
            name, ds = key[5:-1], self._file[key]
            if key + '_shape' not in attrs or 'frame_crc32' not in ds.attrs:
                raise CacheError(f"Cache file {self.path}: field '{name}' lacks its shape or 'frame_crc32' attribute "
                                 f"(written by an older phiml_data, format version {header['format_version']}?).")
            fields[name] = FieldInfo(parse_shape_spec(str(attrs[key + '_shape'])), str(ds.dtype), np.asarray(ds.attrs['frame_crc32'], np.uint32))
            datasets[name] = ds
        return header, fields, datasets

    def read(self, field, start=None, stop=None):
        ds = self._datasets[field]
        try:
            return ds[()] if start is None and stop is None else ds[start:stop]
        except OSError as err:
            raise CacheError(f"Cache file {self.path}: field '{field}' cannot be read, the file is truncated or corrupted ({err}).") from None

    def close(self):
        self._file.close()
