"""Cache: one cache directory and everything in it, owned by one object.

Step 2 of the pipeline (scenarios -> manager (cache) -> dataset -> trainer). A `Cache` owns the directory of one
scenario configuration, named by a hash of everything that determines the data (`keys`): its layout (one file per
sim in a registered `Format`), its manifest, verified reads (`open_sim`, `SimFile`) and writes that are recorded
(`write`, `write_all`). Generation and repair (`generation`), importers, legacy migration and export work through
it; `DataManager` adds the user-facing API (`generate`, `save_phiml_cache`, `load_phiml_cache`).

Layout of `cache_dir / <scenario>-<key>`:

| file              | content                                                                        |
|-------------------|--------------------------------------------------------------------------------|
| `config.json`     | everything the key hashes: parameters, scenario identity, versions, format     |
| `manifest.json`   | per sim: file, size, origin, and per field its shape spec, dtype, checksum digest |
| `sim_000000.h5`   | one simulation (see `phiml_data.formats` for the layouts)                      |
| `quarantine/`     | files that failed verification, moved aside by `generate()` (never deleted)    |

Every read is verified (`open_sim`): when a file is opened, its identity (format and version, cache key, sim
index, field set, shapes, dtypes and the digest of its per-frame checksums) is checked against the manifest and the
scenario; each frame's checksum is checked the first time it is read from that unchanged file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from phiml import math
from phiml.math import Tensor

from .formats import FORMAT_VERSION, CacheError, Reader, checksum_digest, get_format
from .formats.base import frame_checksum, shape_spec
from .keys import differences, hash_payload, key_payload
from .manifest import Manifest, sim_file_name
from .scenarios import Scenario
from .writing import sim_index as checked_index
from .writing import write_sim


class Cache:
    """The cache directory of one scenario configuration: layout, format, key, manifest, verified reads, writes.

    Args:
        cache_dir: Root folder of all caches; this configuration lives in `cache_dir/<scenario>-<key>`
            (made absolute here, so that remote workers write where the client reads).
        scenario: The scenario (a frozen `Scenario` dataclass).
        fmt: A registered format: `'h5'` (default: partial window reads, no pickle) or `'npz'` (PhiML's `math.save`).
        allow_pickle: Allow reading formats whose loader unpickles (`npz`); only for caches you wrote yourself.

    Attributes:
        scenario: The scenario.
        format: The `Format` object (`format.name`: its registry name).
        key: The cache key; `payload`: what it hashes.
        directory: `cache_dir / <scenario>-<key>`.
        manifest_store: The `Manifest` (log-structured record of the cached sims; `entries()` reads it).
    """

    def __init__(self, cache_dir, scenario: Scenario, fmt: str = 'h5', allow_pickle: bool = False):
        self.scenario = scenario
        self.format = get_format(fmt)
        self.allow_pickle = allow_pickle
        self.payload = key_payload(scenario, fmt)
        self.key = hash_payload(self.payload)
        self.directory = Path(cache_dir).absolute() / f'{scenario.name}-{self.key}'
        self.manifest_store = Manifest(self.directory, self.key, self.payload)
        self._verified = {}  # sim -> (file identity, {field: frames verified}) for files that passed the identity check

    def path(self, sim_index: int) -> Path:
        """File of simulation `sim_index` (whether or not it exists)."""
        return self.directory / sim_file_name(sim_index, self.format.suffix)

    def entries(self) -> dict[int, dict]:
        """`{sim_index: {'file', 'bytes', 'origin', 'fields': {name: {'shape', 'dtype', 'digest'}}}}` of recorded sims."""
        return self.manifest_store.read()

    def cached_indices(self) -> list[int]:
        """Sorted indices of the recorded sims whose file is present."""
        return self.manifest_store.present()

    def left_out(self) -> dict[int, str]:
        """Sims the manifest knows of that `cached_indices` leaves out, with the reason: a malformed manifest entry,
        a symbolic link instead of a file, a recorded file that is gone (`generate()` repairs each)."""
        present, out = set(self.cached_indices()), {}
        for path, (i, reason) in self.manifest_store.problems().items():
            if i is not None and i not in present:
                out[int(i)] = f"its manifest entry {Path(path).name} is malformed ({reason})"
        for i, entry in self.entries().items():
            if i not in present:
                path = self.directory / entry['file']
                out[i] = f"{path.name} is a symbolic link" if path.is_symlink() else f"{path.name} is missing"
        return dict(sorted(out.items()))

    def side_path(self, name: str) -> Path:
        """Where to keep a file derived from this cache (statistics, splits): the cache directory if this process
        may write there, else `$XDG_CACHE_HOME/phiml_data/<cache directory name>/` (a read-only shared cache)."""
        if os.access(self.directory, os.W_OK) or not self.directory.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            return self.directory / name
        user = Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'phiml_data' / self.directory.name
        user.mkdir(parents=True, exist_ok=True)
        return user / name

    # --- writing ---

    def write(self, sim_index: int, field_data: dict[str, Tensor], origin: str) -> dict:
        """Validates and writes one sim (temporary file renamed into place), then records it; returns its entry.

        Raises:
            ValueError: The data do not fit the scenario (see `writing.write_sim`); nothing was written.
        """
        return self.write_all([(sim_index, field_data)], origin)[int(sim_index)]

    def write_all(self, sims, origin: str) -> dict[int, dict]:
        """Writes `(sim_index, field_data)` pairs all or nothing: every sim is validated and written to a temporary
        file first; only when all are, they are renamed into place and recorded together. If one fails (bad data, a
        crash, Ctrl-C), only the temporary files are deleted: a sim cached before stays as it was.

        Args:
            sims: Iterable of `(sim_index, {field: Tensor})`, consumed one at a time (data may be read lazily).
            origin: What the manifest records as their origin (`'saved'`, `'imported'`, `'migrated'`, ...).
        """
        staged = {}
        try:
            for i, data in sims:
                i = checked_index(i)
                staged[i] = write_sim(self.directory, self.scenario, self.format.name, i, data, origin, stage=True)
        except BaseException:
            for _, tmp in staged.values():
                tmp.unlink(missing_ok=True)
            raise
        for i, (entry, tmp) in staged.items():
            os.replace(tmp, self.directory / entry['file'])
        written = {i: entry for i, (entry, _) in staged.items()}
        self.record(written)
        return written

    def record(self, entries: dict[int, dict]):
        """Adds manifest entries of sims written with `writing.write_sim` (here, or by remote workers)."""
        self.manifest_store.update(entries)

    def forget_verification(self, sim_index: int):
        """Drops what this process verified of a sim's file: the next `open_sim` checks it in full again."""
        self._verified.pop(int(sim_index), None)

    # --- reading ---

    def open_sim(self, sim_index: int, entry: dict = None) -> 'SimFile':
        """Opens a cached sim for verified reads (see `SimFile`); its identity is checked here.

        Args:
            sim_index: The sim.
            entry: What the file must match, by default its manifest entry.

        Raises:
            CacheError: The sim is not cached, or its file is missing, truncated, foreign (another configuration,
                sim or format version) or does not match the manifest. The message names the file and every difference.
        """
        i, path = int(sim_index), self.path(sim_index)
        entry = entry or self.entries().get(i)
        if entry is None:
            hint = (
                (self.manifest_store.problem_of(i) or "its file is not in the manifest")
                + ": run generate() to verify and adopt its file"
                if path.exists()
                else "run generate() first"
            )
            raise CacheError(
                f"Sim {i} is not cached in {self.directory} ({hint}; {len(self.cached_indices())} sims cached)."
            )
        if path.is_symlink():
            raise CacheError(
                f"Cache file {path} (sim {i}) is a symbolic link (to {os.readlink(path)}); a cache reads only its own "
                f"files. Replace the link by a copy of the file, or run generate() to move it to quarantine/."
            )
        for _ in range(3):  # a file replaced while we open it is opened again
            before = _file_identity(path)
            reader = self.format.open(path, self.allow_pickle)
            if _file_identity(path) == before:
                break
            reader.close()
        state = self._verified.get(i)
        if state is None or state[0] != before:
            problems = self._identity_problems(i, reader, entry)
            if problems:
                reader.close()
                raise CacheError(
                    f"Cache file {path} (sim {i}) fails verification:\n  " + '\n  '.join(problems) + f"\n{_FIX}"
                )
            state = (before, {k: bytearray(len(v.checksums)) for k, v in reader.fields.items()})
            self._verified[i] = state
        return SimFile(self, i, reader, state[1])

    def _identity_problems(self, i: int, reader: Reader, entry: dict) -> list[str]:
        """Every way the open file differs from what the manifest and the scenario say sim `i` must be."""
        header, meta, sc = reader.header, reader.header['metadata'], self.scenario
        if header['format'] != f'phiml_data-{self.format.name}':
            return [f"format {header['format']!r}; expected 'phiml_data-{self.format.name}'"]
        if header['format_version'] != FORMAT_VERSION:
            return [
                f"written in format version {header['format_version']}; this phiml_data reads version {FORMAT_VERSION}. "
                f"Regenerate the cache with this version (phiml-data generate), or read it with the release that wrote it"
            ]
        if not isinstance(meta, dict):
            return [f"its metadata is {type(meta).__name__}, not a JSON object"]
        problems = []
        if meta.get('cache_key') != self.key:
            problems += [
                f"belongs to another configuration: {d}" for d in differences(meta.get('key_payload', {}), self.payload)
            ] or [f"belongs to another configuration (key {meta.get('cache_key')}, expected {self.key})"]
        if meta.get('sim_index') != i:
            problems.append(f"holds sim {meta.get('sim_index')}, not sim {i}")
        if not problems:  # the rest of the metadata: dt, bounds, per-field grid and boundary (what `to_field` uses)
            expected = json.loads(json.dumps({**sc.metadata(i), 'key_payload': self.payload}))
            found = {k: meta.get(k, '<missing>') for k in expected}
            problems += [f"metadata {d} (the attribute was edited)" for d in differences(found, expected)]
        if set(reader.fields) != set(sc.fields):
            problems.append(f"fields {sorted(reader.fields)}; scenario '{sc.name}' has {sorted(sc.fields)}")
        for name in sorted(set(reader.fields) & set(sc.fields)):
            info, recorded = reader.fields[name], entry['fields'].get(name, {})
            if info.shape != sc.field_shape(name) or shape_spec(info.shape) != recorded.get('shape'):
                problems.append(
                    f"field '{name}' has shape {shape_spec(info.shape)}; expected {shape_spec(sc.field_shape(name))} (manifest: {recorded.get('shape')})"
                )
            if info.dtype != sc.dtype or info.dtype != recorded.get('dtype'):
                problems.append(
                    f"field '{name}' has dtype {info.dtype}; expected {sc.dtype} (manifest: {recorded.get('dtype')})"
                )
            if checksum_digest(info.checksums) != recorded.get('digest'):
                problems.append(
                    f"field '{name}': its frame checksums differ from the manifest's (the file was replaced or modified)"
                )
        return problems


def cache_of(manager) -> Cache:
    """The `Cache` of a `DataManager` (or a `Cache` itself): what the package's modules read and write through."""
    return manager if isinstance(manager, Cache) else manager.cache


_FIX = "Run DataManager.generate(..., verify=True) (CLI: phiml-data generate --verify) to move it to quarantine/ and regenerate it."


class SimFile:
    """An open, identity-checked cache file whose frames are checked against their xxh3-64 checksums as they are read.

    Each frame is checked the first time it is read from an unchanged file (same inode, size and modification
    time) in this process; later reads of it skip the check. Use as a context manager or call `close()`.

    Attributes:
        sim_index: The sim.
        metadata: Its metadata dict.
        fields: `{field: FieldInfo}` (shape, dtype, checksums).
    """

    def __init__(self, cache: Cache, sim_index: int, reader: Reader, verified: dict):
        self.cache, self.sim_index, self.reader, self._verified = cache, sim_index, reader, verified
        self.metadata, self.fields = reader.header['metadata'], reader.fields
        self._sums = {k: v.checksums.tolist() for k, v in reader.fields.items()}  # Python ints: fast to compare
        self._dynamic = {k: 'time' in v.shape for k, v in reader.fields.items()}

    def read(self, field: str, start: int = None, stop: int = None, out: np.ndarray = None) -> np.ndarray:
        """Values of `field` (frames `start:stop` of a dynamic field), axes in the order of its shape; verified.

        Args:
            out: Optional C-contiguous array to read into (e.g. one window's slot of a preallocated batch).

        Raises:
            CacheError: A frame fails its xxh3-64 checksum (names the file, sim, field and frame).
        """
        try:
            array = self.reader.read(field, start, stop, out)
        except CacheError as err:  # a format's reader names the file; add the sim and the repair
            raise CacheError(f"Sim {self.sim_index}: {err}\n{_FIX}") from None
        done, first = self._verified[field], start or 0
        n = len(array) if self._dynamic[field] else 1  # static fields: one checksum of the whole array
        if done.find(0, first, first + n) >= 0:  # some frame of this read is not verified yet
            self._verify(field, array, first, n, done)
        return array

    def _verify(self, field, array, first, n, done):
        data = memoryview(np.ascontiguousarray(array)).cast('B')
        size, sums = len(data) // n, self._sums[field]
        for k in range(n):
            if not done[first + k]:
                if frame_checksum(data[k * size : (k + 1) * size]) != sums[first + k]:
                    self.cache.forget_verification(self.sim_index)
                    raise CacheError(
                        f"Cache file {self.reader.path} (sim {self.sim_index}): field '{field}' frame {first + k} fails its "
                        f"xxh3-64 checksum check; the file is corrupted or was modified after it was written.\n{_FIX}"
                    )
                done[first + k] = 1

    def read_all(self):
        """Reads and verifies every frame of every field."""
        for f in self.fields:
            self.read(f)

    def tensor(self, field: str) -> Tensor:
        """The whole field as `Tensor` with its stored shape, verified."""
        return math.tensor(self.read(field), self.fields[field].shape)

    def close(self):
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _file_identity(path: Path):
    try:
        s = path.stat()
    except FileNotFoundError:
        raise CacheError(f"Cache file {path} does not exist; run generate() to regenerate it.") from None
    return s.st_ino, s.st_size, s.st_mtime_ns
