"""The storage-format interface, its registry, per-frame checksums and the atomic write shared by every format."""

from __future__ import annotations

import hashlib
import os
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import xxhash
from phiml.math import Shape, Tensor

from .._phiml import shape_from_spec, shape_to_spec
from ..registry import Registry

FORMAT_VERSION = 2  # 2: per-frame xxh3-64 checksums, identity metadata (class, version, source digest) in every file
FORMATS: Registry['Format'] = Registry('cache format')  # by `data.format` of a run config


class CacheError(ValueError):
    """A cache file is missing, truncated, corrupted, or belongs to another configuration."""


class CacheWarning(UserWarning):
    """Something in a cache that is left out rather than refused (e.g. by a dataset over all cached sims)."""


def register(cls: type['Format']) -> type['Format']:
    """Class decorator: makes a `Format` (an instance of `cls`) available under `cls.name`."""
    return FORMATS.register(make=lambda c: c())(cls)


def get_format(name: str) -> 'Format':
    """The registered format `name`; the error lists the valid names."""
    return FORMATS[FORMATS.check(name)]


def frame_checksums(array: np.ndarray, dynamic: bool) -> np.ndarray:
    """xxh3-64 checksum of each frame (index along the first axis) of a dynamic field, or one checksum of a static field; `uint64`."""
    array = np.ascontiguousarray(array)
    frames = array if dynamic else array[None]
    return np.array([frame_checksum(f) for f in frames], dtype=np.uint64)


def frame_checksum(values) -> int:
    """xxh3-64 of one frame's bytes (C order; an array or a bytes-like object): ~80 GB/s, so checks cost little."""
    return xxhash.xxh3_64_intdigest(values if isinstance(values, memoryview) else np.ascontiguousarray(values).data)


def checksum_digest(checksums: np.ndarray) -> str:
    """SHA-256 of a checksum list: what the manifest stores per field."""
    return hashlib.sha256(np.asarray(checksums, dtype='<u8').tobytes()).hexdigest()


def array_of(t: Tensor) -> np.ndarray:
    """The NumPy array of `t` in the order of its own shape (no copy when already in that order)."""
    return np.ascontiguousarray(t.numpy(t.shape.names))


def shape_spec(shape: Shape) -> str:
    """Text form of a shape with names, types, sizes and item names, e.g. `(time:b=5,x:s=16,vector:c=(x))`."""
    return shape_to_spec(shape)  # PhiML's own spec format, also what its HDF5 reader parses


def parse_shape_spec(spec: str) -> Shape:
    """Inverse of `shape_spec`."""
    return shape_from_spec(spec)


@dataclass(frozen=True)
class FieldInfo:
    """What a reader knows about one stored field before reading its values.

    Attributes:
        shape: The field's PhiML shape (names, types, sizes, item names).
        dtype: NumPy dtype name, e.g. `'float32'`.
        checksums: xxh3-64 checksum per frame (static: one), as stored, or computed when the format stores none.
    """

    shape: Shape
    dtype: str
    checksums: np.ndarray


def field_entry(info: FieldInfo) -> dict:
    """The manifest entry of one stored field: `{'shape': spec, 'dtype', 'digest': SHA-256 of its frame checksums}`."""
    return {'shape': shape_spec(info.shape), 'dtype': info.dtype, 'digest': checksum_digest(info.checksums)}


class Reader(ABC):
    """An open cache file. Use as a context manager or call `close()`.

    Attributes:
        path: The file.
        header: `{'format': str, 'format_version': int, 'metadata': dict}`.
        fields: `{field: FieldInfo}`.
    """

    path: Path
    header: dict
    fields: dict[str, FieldInfo]

    @abstractmethod
    def read(self, field: str, start: int = None, stop: int = None, out: np.ndarray = None) -> np.ndarray:
        """Values of `field`, frames `start:stop` of a dynamic field (all by default), axes in the order of its shape.

        `out`: optional C-contiguous array of the result's shape and dtype to read into (returned).
        """

    def close(self):
        """Releases the file."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Format(ABC):
    """How one simulation is stored. Subclass, set `name` / `suffix`, implement `_write` and `open`, and `@register`.

    Attributes:
        name: Registry name (`DataConfig.format`, `DataManager(fmt=...)`).
        suffix: File suffix, e.g. `'.h5'`.
        partial_reads: Whether `Reader.read` reads only the requested frames (else the whole file is in memory).
        needs_pickle: Whether reading can run code stored in the file (then reads must be allowed per call).
        handle_bytes: Memory an open reader holds besides the data it returns (partial-read formats).
    """

    name: ClassVar[str]
    suffix: ClassVar[str]
    partial_reads: ClassVar[bool] = True
    needs_pickle: ClassVar[bool] = False
    handle_bytes: ClassVar[int] = 0

    def write(
        self, path: Path, fields: dict[str, Tensor], metadata: dict, static: set = frozenset()
    ) -> dict[str, dict]:
        """Writes one simulation atomically (`stage`, then renamed into place).

        Returns:
            `{field: {'shape', 'dtype', 'digest'}}` for the manifest.
        """
        entries, staged = self.stage(path, fields, metadata, static)
        os.replace(staged, path)
        return entries

    def stage(
        self, path: Path, fields: dict[str, Tensor], metadata: dict, static: set = frozenset()
    ) -> tuple[dict[str, dict], Path]:
        """Writes one simulation completely to a temporary sibling of `path` (`.<name>.<random>.tmp`, which
        `generate()` sweeps if its writer died), for the caller to rename into place.

        Returns:
            The manifest's `{field: {'shape', 'dtype', 'digest'}}` and the temporary file.
        """
        path = Path(path)
        arrays = {k: array_of(t) for k, t in fields.items()}
        checksums = {k: frame_checksums(a, k not in static) for k, a in arrays.items()}
        header = {'format': f'phiml_data-{self.name}', 'format_version': FORMAT_VERSION, 'metadata': metadata}
        tmp = Path(tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)[1])
        try:
            self._write(tmp, {k: (fields[k].shape, arrays[k], checksums[k]) for k in fields}, header)
            os.chmod(tmp, 0o644)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise OSError(err.errno, f"Cannot write {path}: {err.strerror or err}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        entries = {k: field_entry(FieldInfo(fields[k].shape, str(arrays[k].dtype), checksums[k])) for k in fields}
        return entries, tmp

    @abstractmethod
    def _write(self, tmp: Path, fields: dict[str, tuple[Shape, np.ndarray, np.ndarray]], header: dict):
        """Writes `{field: (shape, array, checksums)}` and `header` to the (existing, empty) file `tmp`."""

    @abstractmethod
    def open(self, path: Path, allow_pickle: bool = False) -> Reader:
        """Opens a file for reading; raises `CacheError` naming the file if it is missing, truncated or foreign."""

    def check_pickle(self, path: Path, allow_pickle: bool):
        """Refuses to read a format that unpickles unless the caller allowed it for this call."""
        if self.needs_pickle and not allow_pickle:
            raise CacheError(
                f"Cache file {path} is in format '{self.name}', whose loader unpickles (it can run code stored in "
                f"the file). Pass allow_pickle=True (CLI: --allow-pickle) only for files you wrote yourself."
            )
