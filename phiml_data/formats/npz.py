"""PhiML's own `math.save` format (uncompressed `.npz`), one file per simulation.

`phiml.math.load` unpickles (it loads NumPy object arrays), so reading must be allowed per call
(`DataManager(..., allow_pickle=True)`, CLI `--allow-pickle`); only read `.npz` caches you wrote yourself.
No partial reads: a reader holds the whole file in memory. checksums are not stored; they are computed on load and
checked against the manifest's digest.
"""

from __future__ import annotations

import json
from pathlib import Path

from phiml import math

from .base import CacheError, FieldInfo, Format, Reader, array_of, frame_checksums, register


@register
class Npz(Format):
    name = 'npz'
    suffix = '.npz'
    partial_reads = False
    needs_pickle = True

    def _write(self, tmp, fields, header):
        tensors = {k: math.tensor(a, shape) for k, (shape, a, _) in fields.items()}
        math.save(
            str(tmp),
            {
                'fields': tensors,
                'format': header['format'],
                'format_version': header['format_version'],
                'metadata': json.dumps(header['metadata']),
            },
        )
        Path(str(tmp) + '.npz').replace(tmp)  # NumPy appends `.npz` to the name it is given

    def open(self, path, allow_pickle=False):
        path = Path(path)
        self.check_pickle(path, allow_pickle)
        return NpzReader(path)


class NpzReader(Reader):
    """A whole `.npz` simulation in memory."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            raise CacheError(f"Cache file {path} does not exist.")
        try:
            data = math.load(str(path))
            self.header = {
                'format': data['format'],
                'format_version': int(data['format_version']),
                'metadata': json.loads(data['metadata']),
            }
        except Exception as err:
            raise CacheError(
                f"Cache file {path} is truncated, corrupted or not a phiml_data cache file ({type(err).__name__}: {err})."
            ) from None
        self._arrays = {k: array_of(t) for k, t in data['fields'].items()}
        self.fields = {
            k: FieldInfo(t.shape, str(self._arrays[k].dtype), frame_checksums(self._arrays[k], 'time' in t.shape))
            for k, t in data['fields'].items()
        }

    def read(self, field, start=None, stop=None, out=None):
        a = self._arrays[field]
        a = a if start is None and stop is None else a[start:stop]
        if out is None:
            return a.copy()
        out[...] = a
        return out
