"""Self-describing HDF5, one file per simulation (the default format).

| where                  | what                                                                              |
|------------------------|-----------------------------------------------------------------------------------|
| dataset `root[FIELD]`  | the field's values, axes in the order of attribute `dims`, chunked one frame each |
| dataset attrs          | `dims`, `dim_types` (comma-separated), `item_names` (JSON), `frame_xxh3` (uint64 xxh3-64 per frame) |
| file attrs             | `format` = `phiml_data-h5`, `format_version`, `metadata` (JSON: scenario, identity, sim index, grid) |
| file attrs `root[FIELD]_shape/_names/_dtype`, `content_hierarchy` | what `phiml.math._tree.load_h5` reads  |

Readable with plain h5py and by PhiML's own `phiml.math._tree.load_h5`; nothing is pickled.

Reads: the files we write store every frame as one raw (unfiltered) chunk, so a reader asks HDF5 once for each
frame's byte offset and then reads frames with `os.preadv` into the caller's buffer; the HDF5 handle is closed, and an
open sim costs one file descriptor and a few KiB (an open HDF5 file costs ~0.5 MiB). Files with filters or missing
chunks are read through h5py instead.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from .base import CacheError, FieldInfo, Format, Reader, parse_shape_spec, register, shape_spec


def dataset_name(field: str) -> str:
    """HDF5 dataset name of `field`, as PhiML's `load_h5` expects it."""
    return f'root[{field}]'


@register
class H5(Format):
    name = 'h5'
    suffix = '.h5'
    handle_bytes = 16 * 2**10  # an open reader: one descriptor, frame offsets and checksums (HDF5 handle closed)

    def _write(self, tmp, fields, header):
        """Builds the file in memory, then writes its bytes: a failing write (disk full, file too large) raises a
        plain `OSError` here instead of failing inside HDF5's own cleanup."""
        import h5py

        image = io.BytesIO()
        with h5py.File(image, 'w') as f:
            f.attrs['format'] = header['format']
            f.attrs['format_version'] = header['format_version']
            f.attrs['metadata'] = json.dumps(header['metadata'])
            f.attrs['content_hierarchy'] = '{' + ','.join(f'{k}=D' for k in fields) + '}'
            for name, (shape, array, checksums) in fields.items():
                chunks = (1, *array.shape[1:]) if shape.names[0] == 'time' and array.ndim > 1 else None
                ds = f.create_dataset(
                    dataset_name(name), data=array, chunks=chunks, track_times=False
                )  # same data, same bytes
                items = {d.name: list(d.item_names[0]) for d in shape if d.item_names[0]}
                ds.attrs.update(
                    {
                        'dims': ','.join(shape.names),
                        'dim_types': ','.join(shape.dim_types),
                        'item_names': json.dumps(items),
                        'frame_xxh3': checksums,
                    }
                )
                f.attrs[dataset_name(name) + '_shape'] = shape_spec(shape)  # the three attrs PhiML's load_h5 reads
                f.attrs[dataset_name(name) + '_names'] = ','.join(shape.names)
                f.attrs[dataset_name(name) + '_dtype'] = str(array.dtype)
        with open(tmp, 'wb') as out:
            out.write(image.getbuffer())

    def open(self, path, allow_pickle=False):
        return H5Reader(Path(path))


class H5Reader(Reader):
    """Open HDF5 cache file; `read` reads only the requested frames, by `preadv` at known offsets where it can."""

    def __init__(self, path: Path):
        import h5py

        self.path = path
        try:
            self._file = h5py.File(path, 'r', rdcc_nbytes=0)  # chunks are whole frames: no chunk cache
        except FileNotFoundError:
            raise CacheError(f"Cache file {path} does not exist.") from None
        except OSError as err:
            raise CacheError(f"Cache file {path} is truncated or not an HDF5 file ({err}).") from None
        try:
            self.header, self.fields, self._datasets = self._describe()
            self._offsets = {k: _frame_offsets(ds) for k, ds in self._datasets.items()}
            self._frames = {
                k: (
                    ds.shape[0] if 'time' in self.fields[k].shape else None,
                    ds.shape[1:] if 'time' in self.fields[k].shape else ds.shape,
                    ds.dtype,
                )
                for k, ds in self._datasets.items()
            }  # (frames or None for static, frame shape, dtype)
            self._fd = None
            if all(o is not None for o in self._offsets.values()):
                self._fd = os.open(path, os.O_RDONLY)
                self._file.close()
        except BaseException:
            self._file.close()
            raise

    def _describe(self):
        attrs = self._file.attrs
        missing = [a for a in ('format', 'format_version', 'metadata') if a not in attrs]
        if missing:
            raise CacheError(
                f"Cache file {self.path} is not a complete phiml_data cache file (attribute(s) {missing} missing)."
            )
        try:
            header = {
                'format': str(attrs['format']),
                'format_version': int(attrs['format_version']),
                'metadata': json.loads(attrs['metadata']),
            }
        except (ValueError, TypeError) as err:
            raise CacheError(f"Cache file {self.path}: attribute 'metadata' is not valid JSON ({err}).") from None
        fields, datasets = {}, {}
        for key in self._file.keys():
            if not (key.startswith('root[') and key.endswith(']')):
                continue
            name, ds = key[5:-1], self._file[key]
            if key + '_shape' not in attrs or 'frame_xxh3' not in ds.attrs:
                raise CacheError(
                    f"Cache file {self.path}: field '{name}' lacks its shape or 'frame_xxh3' attribute "
                    f"(written by an older phiml_data, format version {header['format_version']}?)."
                )
            fields[name] = FieldInfo(
                parse_shape_spec(str(attrs[key + '_shape'])),
                str(ds.dtype),
                np.asarray(ds.attrs['frame_xxh3'], np.uint64),
            )
            datasets[name] = ds
        return header, fields, datasets

    def read(self, field, start=None, stop=None, out=None):
        n, frame_shape, dtype = self._frames[field]
        dynamic = n is not None
        start, stop = (0 if start is None else start), ((n or 1) if stop is None else stop)
        shape = ((stop - start,) if dynamic else ()) + frame_shape
        if out is None:
            out = np.empty(shape, dtype)
        elif out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {dtype} array of shape {shape}, got {out.dtype} {out.shape}")
        if self._fd is None:
            return self._read_h5py(field, start, stop, dynamic, out)
        offsets, frame = self._offsets[field], out.nbytes // max(stop - start, 1)
        view = memoryview(out.reshape(-1).view(np.uint8))
        t = start
        while t < stop:  # one preadv per run of frames stored back to back
            end = t + 1
            while end < stop and offsets[end] == offsets[end - 1] + frame:
                end += 1
            part = view[(t - start) * frame : (end - start) * frame]
            if os.preadv(self._fd, [part], int(offsets[t])) != len(part):
                raise CacheError(
                    f"Cache file {self.path}: field '{field}' frames {t}:{end} cannot be read, the file is truncated."
                )
            t = end
        return out

    def _read_h5py(self, field, start, stop, dynamic, out):
        try:
            self._datasets[field].read_direct(out, np.s_[start:stop] if dynamic else None)
        except OSError as err:
            raise CacheError(
                f"Cache file {self.path}: field '{field}' cannot be read, the file is truncated or corrupted ({err})."
            ) from None
        return out

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._file.close()


def _frame_offsets(ds) -> np.ndarray | None:
    """Byte offset of each frame of a dataset stored raw (one unfiltered chunk per frame, or contiguous); else `None`."""
    if ds.compression or ds.shuffle or ds.fletcher32 or ds.scaleoffset or not ds.dtype.isnative:
        return None
    if ds.chunks is None:
        offset = ds.id.get_offset()
        return None if offset is None else np.array([offset], np.int64)
    if ds.chunks[1:] != ds.shape[1:] or ds.chunks[0] != 1 or ds.id.get_num_chunks() != ds.shape[0]:
        return None
    offsets = np.empty(ds.shape[0], np.int64)
    bad, frame_bytes = [], ds.dtype.itemsize * int(np.prod(ds.shape[1:]))

    def visit(chunk):
        if chunk.filter_mask or chunk.size != frame_bytes:
            bad.append(chunk)
        offsets[chunk.chunk_offset[0]] = chunk.byte_offset

    ds.id.chunk_iter(visit)
    return None if bad else offsets
