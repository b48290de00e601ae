"""DataManager: the on-disk cache of simulations, one self-describing, verified file per simulation.

Step 2 of the pipeline (scenarios -> manager -> dataset -> trainer). The manager owns a cache directory per
configuration, named by a hash of everything that determines the data, and a manifest of what it holds.

Layout of `cache_dir / <scenario>-<key>`:

| file              | content                                                                        |
|-------------------|--------------------------------------------------------------------------------|
| `config.json`     | everything the key hashes: parameters, scenario identity, versions, format     |
| `manifest.json`   | per sim: file, size, origin, and per field its shape spec, dtype, checksum digest   |
| `sim_000000.h5`   | one simulation (see `phiml_data.formats` for the layouts)                      |
| `quarantine/`     | files that failed verification, moved aside by `generate()` (never deleted)    |

Every read is verified (`open_sim`): when a file is opened, its identity (format and version, cache key, sim
index, field set, shapes, dtypes and the digest of its per-frame checksums) is checked against the manifest and the
scenario; each frame's xxh3-64 checksum is checked the first time it is read from that unchanged file.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
from phiml import math
from phiml.math import Tensor

from .formats import FORMAT_VERSION, CacheError, Reader, checksum_digest, get_format
from .formats.base import frame_checksum, shape_spec
from .scenarios import Scenario, simulate

_TMP_SIM = re.compile(r'^\.sim_(\d+)\..*\.tmp$')


class SimulationData(dict):
    """`{field: Tensor}` of one cached simulation, with its metadata dict as `.metadata`.

    Dynamic fields: `Tensor (timeᵇ, xˢ, [yˢ], [vectorᶜ])`; static fields: `Tensor (xˢ, [yˢ])`.
    """

    def __init__(self, fields: dict[str, Tensor], metadata: dict):
        super().__init__(fields)
        self.metadata = metadata


def library_versions() -> dict[str, str]:
    """Versions of the libraries the cached data depends on."""
    import phi
    import phiml
    return {'phiml': phiml.__version__, 'phiflow': phi.__version__, 'numpy': np.__version__}


def key_payload(scenario: Scenario, fmt: str) -> dict:
    """Everything that determines the cached data: parameters, scenario identity, library versions, format."""
    return {'params': scenario.params(), 'identity': scenario.identity(), 'versions': library_versions(),
            'format': fmt, 'format_version': FORMAT_VERSION}


def cache_key(scenario: Scenario, fmt: str = 'h5') -> str:
    """Hash of `key_payload(scenario, fmt)`."""
    return hashlib.sha256(json.dumps(key_payload(scenario, fmt), sort_keys=True).encode()).hexdigest()[:16]


def differences(found: dict, expected: dict, prefix: str = '') -> list[str]:
    """Leaf-by-leaf differences of two nested dicts, e.g. `["params.seed: 5 (found) vs 0 (expected)"]`."""
    out = []
    for k in sorted(set(found) | set(expected), key=str):
        a, b, path = found.get(k, '<missing>'), expected.get(k, '<missing>'), f'{prefix}{k}'
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, path + '.')
        elif a != b:
            out.append(f'{path}: {a!r} (found) vs {b!r} (expected)')
    return out


def sim_file_name(sim_index: int, suffix: str) -> str:
    """File name of a sim, e.g. `sim_000003.h5`."""
    return f'sim_{int(sim_index):06d}{suffix}'


class DataManager:
    """Creates, reads, verifies and repairs the cache of one scenario configuration.

    Args:
        cache_dir: Root folder of all caches; this configuration lives in `cache_dir/<scenario>-<key>`
            (made absolute here, so that remote workers write where the client reads).
        scenario: The scenario (a frozen `Scenario` dataclass).
        fmt: A registered format: `'h5'` (default: partial window reads, no pickle) or `'npz'` (PhiML's `math.save`).
        allow_pickle: Allow reading formats whose loader unpickles (`npz`); only for caches you wrote yourself.

    Example:
        >>> dm = DataManager(tmp, Burgers2D(resolution=16, steps=8))
        >>> dm.generate(2, progress=False)
        [0, 1]
        >>> sim = dm.load_phiml_cache(0)
        >>> sim['velocity'].shape, sim.metadata['dt']
        ((timeᵇ=9, xˢ=16, yˢ=16, vectorᶜ=x,y), 0.05)
    """

    def __init__(self, cache_dir, scenario: Scenario, fmt: str = 'h5', allow_pickle: bool = False):
        self.scenario = scenario
        self.format = get_format(fmt)
        self.fmt = fmt
        self.allow_pickle = allow_pickle
        self.payload = key_payload(scenario, fmt)
        self.key = cache_key(scenario, fmt)
        self.directory = Path(cache_dir).absolute() / f'{scenario.name}-{self.key}'
        self._manifest_cache = (None, {})
        self._verified = {}  # sim -> (file identity, {field: frames verified}) for files that passed the identity check

    @property
    def config(self) -> Scenario:
        """Deprecated alias of `scenario`."""
        warnings.warn("DataManager.config is deprecated; use DataManager.scenario", DeprecationWarning, stacklevel=2)
        return self.scenario

    def __repr__(self):
        return f"DataManager({self.directory}, {len(self.cached_indices())} sims cached)"

    # --- paths, config and manifest ---

    def path(self, sim_index: int) -> Path:
        """File of simulation `sim_index` (whether or not it exists)."""
        return self.directory / sim_file_name(sim_index, self.format.suffix)

    def manifest(self) -> dict[int, dict]:
        """`{sim_index: {'file', 'bytes', 'origin', 'fields': {name: {'shape', 'dtype', 'digest'}}}}` of recorded sims."""
        path = self.directory / 'manifest.json'
        try:
            stat = path.stat()
        except FileNotFoundError:
            return {}
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._manifest_cache[0] != version:  # re-read only when another writer replaced it
            try:
                sims = {int(k): v for k, v in json.loads(path.read_text())['sims'].items()}
            except (ValueError, KeyError, TypeError) as err:
                raise CacheError(f"Manifest {path} is corrupted ({err}); delete it and run generate() to rebuild it from the sim files.") from None
            self._manifest_cache = (version, sims)
        return dict(self._manifest_cache[1])

    def side_path(self, name: str) -> Path:
        """Where to keep a file derived from this cache (statistics, splits): the cache directory if this process
        may write there, else `$XDG_CACHE_HOME/phiml_data/<cache directory name>/` (a read-only shared cache)."""
        if os.access(self.directory, os.W_OK) or not self.directory.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            return self.directory / name
        user = Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'phiml_data' / self.directory.name
        user.mkdir(parents=True, exist_ok=True)
        return user / name

    def cached_indices(self) -> list[int]:
        """Sorted indices of the recorded sims whose file is present."""
        manifest = self.manifest()
        present = set(os.listdir(self.directory)) if manifest else set()
        return sorted(i for i, e in manifest.items() if e['file'] in present)

    def _check_config(self):
        """Refuses a directory whose `config.json` describes another configuration, naming each difference."""
        path = self.directory / 'config.json'
        if not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
        except ValueError as err:
            raise CacheError(f"{path} is not valid JSON ({err}); it should hold {sorted(self.payload)}.") from None
        diff = differences({k: v for k, v in saved.items() if k != 'key'}, self.payload)
        if diff:
            raise CacheError(f"{path} describes another configuration than this DataManager's:\n  " + '\n  '.join(diff))

    @contextlib.contextmanager
    def _locked(self):
        """Exclusive lock on this cache's manifest, across processes (released if the holder dies)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / 'manifest.lock', 'w') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _update_manifest(self, add: dict[int, dict] = None, remove=()):
        """Adds and removes manifest entries under the lock, writing the manifest atomically."""
        if not add and not remove:
            return
        with self._locked():
            self._check_config()
            if not (self.directory / 'config.json').exists():
                write_json(self.directory / 'config.json', {'key': self.key, **self.payload})
            sims = {**self.manifest(), **{int(k): v for k, v in (add or {}).items()}}
            for i in remove:
                sims.pop(int(i), None)
            write_json(self.directory / 'manifest.json', {'key': self.key, 'sims': {str(k): sims[k] for k in sorted(sims)}})

    # --- writing ---

    def save_phiml_cache(self, sim_index: int, field_data: dict[str, Tensor]) -> dict:
        """Validates and writes one simulation, then records it in the manifest.

        Args:
            sim_index: Index of the simulation (>= 0).
            field_data: `{field: Tensor}` with exactly the scenario's fields, each of shape
                `scenario.field_shape(field)`: dynamic `Tensor (timeᵇ=steps+1, xˢ, [yˢ], [vectorᶜ])`, static
                fields without `time`; dtype `scenario.dtype`. Dim order does not matter.

        Returns:
            The manifest entry of the sim.

        Raises:
            ValueError: Missing or unknown fields, wrong dims, sizes, item names or dtype, or NaN / Inf values;
                the message lists every difference, the sim and the parameters.
        """
        entry = write_sim(self.directory, self.scenario, self.fmt, _index(sim_index), field_data, origin='saved')
        self._update_manifest({sim_index: entry})
        return entry

    def generate(self, n_sims: int | list[int], executor: Executor = None, batch_size: int = 8, progress: bool = True,
                 verify: bool = False) -> list[int]:
        """Simulates and caches the sims that are not cached, after repairing what it finds broken.

        Repairs, before simulating: leftover temporary files of killed writers are deleted; files listed in the
        manifest that are gone are forgotten; files that fail a cheap check (size, header, identity) or, with
        `verify=True`, any frame's checksum are moved to `quarantine/` and regenerated; valid files missing from the
        manifest (a crash between rename and record) are adopted.

        Batchable scenarios run `batch_size` sims per vectorised run. With an `executor` (e.g. a
        `concurrent.futures.ProcessPoolExecutor` or a `dask.distributed.Client`), chunks run there; each worker first
        checks that it computes the same cache key (same library versions and scenario code), then writes its files
        into the cache directory and returns only manifest entries.

        Args:
            n_sims: Number of sims (indices `0..n_sims-1`) or an explicit list of indices.
            executor: Where to run the chunks; `None` runs them in this process.
            batch_size: Sims per chunk (one vectorised run for batchable scenarios).
            progress: Show a progress bar.
            verify: Check every frame of every cached file, not only its size and header.

        Returns:
            The indices that were generated by this call.
        """
        from tqdm import tqdm
        indices = list(range(_index(n_sims))) if isinstance(n_sims, (int, np.integer)) else [_index(i) for i in n_sims]
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._check_config()
        self._sweep_temporaries()
        kept = self._repair(indices, verify)
        missing = [i for i in self._missing(indices) if i not in kept]
        bar = tqdm(total=len(missing), desc=f'simulating {self.scenario.name}', unit='sim', disable=not progress or not missing)
        generated, todo, rounds = [], missing, 0
        try:
            while todo:
                rounds += 1
                if rounds > 3:
                    raise RuntimeError(f"Sims {todo[:10]} are still missing after {rounds - 1} rounds in {self.directory}")
                chunks = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
                for entries in self._run_chunks(chunks, executor, bar):
                    self._update_manifest(entries)
                    generated.extend(entries)
                todo = self._wait_for_other_writers(self._missing(todo))
        finally:
            bar.close()
        if kept:
            raise CacheError(f"Sims {kept} were imported, not simulated, and failed verification; they were moved to "
                             f"{self.directory / 'quarantine'}. Import them again.")
        return sorted(generated)

    def _run_chunks(self, chunks, executor, bar):
        """Yields the manifest entries of each chunk as it finishes; raises after all ran if any failed."""
        args = (str(self.directory), self.scenario, self.fmt, self.payload)
        if executor is None:
            for chunk in chunks:
                yield generate_chunk(*args, chunk)
                bar.update(len(chunk))
            return
        dask = hasattr(executor, 'gather')  # a dask.distributed.Client caches results by key: a retry must be a new task
        futures = {executor.submit(generate_chunk, *args, chunk, **({'pure': False} if dask else {})): chunk for chunk in chunks}
        failed = []
        for future in _as_completed(executor, futures):
            try:
                yield future.result()
            except Exception as err:  # a worker died or a sim failed: report, keep the others
                failed.append((futures[future], err))
            bar.update(len(futures[future]))
        if failed:
            lines = '\n'.join(f"  sims {c}: {type(e).__name__}: {e}" for c, e in failed)
            raise RuntimeError(f"{sum(len(c) for c, _ in failed)} sims failed; nothing partial was written. "
                               f"Fix the cause below, then rerun generate() to complete them:\n{lines}")

    def _wait_for_other_writers(self, indices) -> list[int]:
        """Waits until no other process holds the claim on `indices`, adopts what they wrote; returns the rest."""
        for i in indices:
            with _claim(self.directory, i, block=True):
                pass
        self._repair(indices, verify=False)
        return self._missing(indices)

    def _missing(self, indices) -> list[int]:
        """Indices without a manifest entry or whose file is gone."""
        cached = set(self.cached_indices())
        return [i for i in indices if i not in cached]

    def _sweep_temporaries(self):
        """Deletes temporary files of writers that died (their sim's claim is free)."""
        if not self.directory.exists():
            return
        for path in self.directory.iterdir():
            match = _TMP_SIM.match(path.name)
            if match:
                with _claim(self.directory, int(match.group(1))) as mine:
                    if mine:
                        path.unlink(missing_ok=True)

    def _repair(self, indices, verify: bool) -> list[int]:
        """Forgets gone files, quarantines broken ones, adopts valid unrecorded ones; returns broken non-simulated sims."""
        if not self.directory.exists():
            return []
        manifest, present = self.manifest(), set(os.listdir(self.directory))
        forget, adopt, kept = [], {}, []
        for i in indices:
            entry, name = manifest.get(i), sim_file_name(i, self.format.suffix)
            if name not in present:
                if entry:
                    forget.append(i)
                continue
            try:
                if entry:
                    self._check_file(i, entry, full=verify)
                else:
                    adopt[i] = self._adopt_entry(i)
            except CacheError as err:
                self._quarantine(i, err)
                forget.append(i)
                if entry and entry.get('origin') != 'simulated':
                    kept.append(i)
        self._update_manifest(adopt, forget)
        return kept

    def _check_file(self, i: int, entry: dict, full: bool):
        path = self.path(i)
        if path.stat().st_size != entry.get('bytes'):
            raise CacheError(f"Cache file {path} has {path.stat().st_size} bytes; the manifest recorded {entry.get('bytes')}.")
        self._verified.pop(i, None)
        with self.open_sim(i) as sim:
            if full:
                for f in sim.fields:
                    sim.read(f)

    def _adopt_entry(self, i: int) -> dict:
        """Manifest entry of a file that was renamed into place but never recorded, after checking all its frames."""
        path = self.path(i)
        with self.format.open(path, self.allow_pickle) as reader:
            origin = reader.header['metadata'].get('origin', 'simulated')
            entry = {'file': path.name, 'bytes': path.stat().st_size, 'origin': origin,
                     'fields': {k: {'shape': shape_spec(v.shape), 'dtype': v.dtype, 'digest': checksum_digest(v.checksums)} for k, v in reader.fields.items()}}
            problems = self._identity_problems(i, reader, entry)
            if problems:
                raise CacheError(f"Cache file {path} (not in the manifest) fails verification:\n  " + '\n  '.join(problems))
            SimFile(self, i, reader, {k: bytearray(len(v.checksums)) for k, v in reader.fields.items()}).read_all()
        return entry

    def _quarantine(self, i: int, reason: Exception):
        """Moves a broken file aside (never deletes data) and notes why."""
        target = self.directory / 'quarantine'
        target.mkdir(exist_ok=True)
        stamp = time.strftime('%Y%m%d-%H%M%S')
        dest = target / f'{self.path(i).name}.{stamp}'
        os.replace(self.path(i), dest)
        dest.with_name(dest.name + '.reason.txt').write_text(str(reason))
        self._verified.pop(i, None)

    # --- reading ---

    def open_sim(self, sim_index: int) -> 'SimFile':
        """Opens a cached sim for verified reads (see `SimFile`); its identity is checked here.

        Raises:
            CacheError: The sim is not cached, or its file is missing, truncated, foreign (another configuration,
                sim or format version) or does not match the manifest. The message names the file and every difference.
        """
        i, path = int(sim_index), self.path(sim_index)
        entry = self.manifest().get(i)
        if entry is None:
            hint = "its file is not in the manifest: run generate() to verify and adopt it" if path.exists() else "run generate() first"
            raise CacheError(f"Sim {i} is not cached in {self.directory} ({hint}; {len(self.cached_indices())} sims cached).")
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
                raise CacheError(f"Cache file {path} (sim {i}) fails verification:\n  " + '\n  '.join(problems) + f"\n{_FIX}")
            state = (before, {k: bytearray(len(v.checksums)) for k, v in reader.fields.items()})
            self._verified[i] = state
        return SimFile(self, i, reader, state[1])

    def _identity_problems(self, i: int, reader: Reader, entry: dict) -> list[str]:
        """Every way the open file differs from what the manifest and the scenario say sim `i` must be."""
        header, meta, sc = reader.header, reader.header['metadata'], self.scenario
        if header['format'] != f'phiml_data-{self.fmt}':
            return [f"format {header['format']!r}; expected 'phiml_data-{self.fmt}'"]
        if header['format_version'] != FORMAT_VERSION:
            return [f"written in format version {header['format_version']}; this phiml_data reads version {FORMAT_VERSION}. "
                    f"Regenerate the cache with this version (python -m phiml_data generate), or read it with the release that wrote it"]
        problems = []
        if meta.get('cache_key') != self.key:
            problems += [f"belongs to another configuration: {d}" for d in differences(meta.get('key_payload', {}), self.payload)] \
                or [f"belongs to another configuration (key {meta.get('cache_key')}, expected {self.key})"]
        if meta.get('sim_index') != i:
            problems.append(f"holds sim {meta.get('sim_index')}, not sim {i}")
        if set(reader.fields) != set(sc.fields):
            problems.append(f"fields {sorted(reader.fields)}; scenario '{sc.name}' has {sorted(sc.fields)}")
        for name in sorted(set(reader.fields) & set(sc.fields)):
            info, recorded = reader.fields[name], entry['fields'].get(name, {})
            if info.shape != sc.field_shape(name) or shape_spec(info.shape) != recorded.get('shape'):
                problems.append(f"field '{name}' has shape {shape_spec(info.shape)}; expected {shape_spec(sc.field_shape(name))} (manifest: {recorded.get('shape')})")
            if info.dtype != sc.dtype or info.dtype != recorded.get('dtype'):
                problems.append(f"field '{name}' has dtype {info.dtype}; expected {sc.dtype} (manifest: {recorded.get('dtype')})")
            if checksum_digest(info.checksums) != recorded.get('digest'):
                problems.append(f"field '{name}': its frame checksums differ from the manifest's (the file was replaced or modified)")
        return problems

    def load_phiml_cache(self, sim_index: int, fields: list[str] = None) -> SimulationData:
        """Loads one cached simulation fully into memory, verified against the manifest and the scenario.

        Args:
            sim_index: Index of the simulation.
            fields: Field names to load; all by default.

        Returns:
            `SimulationData`: `{field: Tensor}` exactly as saved (dims, types, item names, dtype, values),
            with `.metadata` (scenario, parameters, identity, sim index, dt, bounds, resolution, per-field grid info).

        Raises:
            CacheError: Missing, truncated or corrupted file, a file from another configuration, sim or format
                version, or an unknown field. The message names the file and how to repair it.
        """
        fields = list(self.scenario.fields) if fields is None else list(fields)
        unknown = [f for f in fields if f not in self.scenario.fields]
        if unknown:
            raise CacheError(f"Unknown field(s) {unknown}; scenario '{self.scenario.name}' has {sorted(self.scenario.fields)}.")
        with self.open_sim(sim_index) as sim:
            return SimulationData({f: sim.tensor(f) for f in fields}, sim.metadata)

    def load_metadata(self, sim_index: int) -> dict:
        """Metadata of one cached sim (identity-checked) without reading its fields."""
        with self.open_sim(sim_index) as sim:
            return sim.metadata

    def summary(self) -> dict:
        """What the cache holds: directory, key, sims, fields with shape spec and dtype, size on disk in bytes."""
        manifest = self.manifest()
        first = manifest[min(manifest)]['fields'] if manifest else {}
        return {'directory': str(self.directory), 'key': self.key, 'scenario': self.scenario.params(), 'format': self.fmt,
                'sims': len(self.cached_indices()), 'fields': {k: {'shape': v['shape'], 'dtype': v['dtype']} for k, v in first.items()},
                'bytes': sum(e.get('bytes', 0) for e in manifest.values())}

    # --- importing ---

    def import_scene(self, scene_path, sim_index: int, dt: float = None) -> dict:
        """Imports a PhiFlow `Scene` directory as sim `sim_index`, validated against the scenario.

        See `phiml_data.importers.import_scene`.
        """
        from .importers import import_scene
        return import_scene(self, scene_path, sim_index, dt)


_FIX = "Run DataManager.generate(..., verify=True) (CLI: python -m phiml_data generate --verify) to move it to quarantine/ and regenerate it."


class SimFile:
    """An open, identity-checked cache file whose frames are checked against their xxh3-64 checksums as they are read.

    Each frame is checked the first time it is read from an unchanged file (same inode, size and modification
    time) in this process; later reads of it skip the check. Use as a context manager or call `close()`.

    Attributes:
        sim_index: The sim.
        metadata: Its metadata dict.
        fields: `{field: FieldInfo}` (shape, dtype, checksums).
    """

    def __init__(self, manager: DataManager, sim_index: int, reader: Reader, verified: dict):
        self.manager, self.sim_index, self.reader, self._verified = manager, sim_index, reader, verified
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
        array = self.reader.read(field, start, stop, out)
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
                if frame_checksum(data[k * size:(k + 1) * size]) != sums[first + k]:
                    self.manager._verified.pop(self.sim_index, None)
                    raise CacheError(f"Cache file {self.reader.path} (sim {self.sim_index}): field '{field}' frame {first + k} fails its "
                                     f"xxh3-64 checksum check; the file is corrupted or was modified after it was written.\n{_FIX}")
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


def generate_chunk(directory: str, scenario: Scenario, fmt: str, payload: dict, indices: list[int]) -> dict[int, dict]:
    """Simulates and writes the sims of `indices` that no other writer has claimed or written (runs on workers).

    Args:
        payload: The client's `key_payload`; a worker that computes another one (other library versions or scenario
            code) refuses, naming every difference.

    Returns:
        Manifest entries of the sims this call wrote; sims claimed by another process are left to it.
    """
    mine = key_payload(scenario, fmt)
    if mine != payload:
        import socket
        raise RuntimeError(f"Worker {socket.gethostname()} (pid {os.getpid()}) would write different data than the client expects: "
                           + '; '.join(differences(mine, payload)).replace('(found)', '(worker)').replace('(expected)', '(client)')
                           + ". Install the same versions and phiml_data code on every worker.")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = get_format(fmt).suffix
    with contextlib.ExitStack() as claims:
        todo = [i for i in indices if claims.enter_context(_claim(directory, i)) and not (directory / sim_file_name(i, suffix)).exists()]
        return {i: write_sim(directory, scenario, fmt, i, data, origin='simulated') for i, data in zip(todo, simulate(scenario, todo))}


@contextlib.contextmanager
def _claim(directory: Path, sim_index: int, block: bool = False):
    """Exclusive claim on writing one sim, across processes; yields whether it was obtained.

    An `flock` on `.sim_<i>.lock`: released when the holder finishes or dies, so a killed writer never blocks a rerun.
    """
    with open(Path(directory) / f'.sim_{sim_index:06d}.lock', 'w') as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_sim(directory: Path, scenario: Scenario, fmt: str, sim_index: int, field_data: dict, origin: str) -> dict:
    """Validates one simulation against `scenario` and writes it atomically; returns its manifest entry."""
    fields = validate_fields(scenario, sim_index, field_data)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fmt_ = get_format(fmt)
    payload = key_payload(scenario, fmt)
    metadata = {**scenario.metadata(sim_index), 'cache_key': cache_key(scenario, fmt), 'key_payload': payload, 'origin': origin}
    path = directory / sim_file_name(sim_index, fmt_.suffix)
    entries = fmt_.write(path, fields, metadata, static={k for k, s in scenario.fields.items() if s.static})
    return {'file': path.name, 'bytes': path.stat().st_size, 'origin': origin, 'fields': entries}


def validate_fields(scenario: Scenario, sim_index: int, field_data: dict) -> dict[str, Tensor]:
    """Checks fields against the scenario (set, dims, sizes, item names, dtype, finite values), listing every problem.

    Returns:
        The fields in canonical dim order `scenario.field_shape(name)`.
    """
    expected, got = set(scenario.fields), set(field_data)
    if expected != got:
        raise ValueError(f"Sim {sim_index}: fields {sorted(got)} do not match scenario '{scenario.name}' fields {sorted(expected)}.")
    problems, out = [], {}
    for name, t in field_data.items():
        want = scenario.field_shape(name)
        if not isinstance(t, Tensor) or set(t.shape.names) != set(want.names):
            problems.append(f"field '{name}' must be a Tensor with dims {list(want.names)}, got {getattr(t, 'shape', type(t))}")
            continue
        shape = t.shape.only(want.names, reorder=True)
        if shape != want:
            problems.append(f"field '{name}' has shape {shape_spec(shape)}; scenario '{scenario.name}' needs {shape_spec(want)}")
            continue
        dtype = _dtype_name(t)
        array = np.ascontiguousarray(t.numpy(want.names))  # PhiML casts to its current precision here: check the tensor's own dtype
        if dtype != scenario.dtype or str(array.dtype) != scenario.dtype:
            problems.append(f"field '{name}' has dtype {dtype}; scenario '{scenario.name}' stores {scenario.dtype}")
        elif not np.isfinite(array).all():
            problems.append(f"field '{name}' contains NaN or Inf; refusing to cache it. Reduce dt or check the scenario")
        out[name] = math.tensor(array, want)
    if problems:
        raise ValueError(f"Sim {sim_index} does not fit scenario '{scenario.name}' (parameters {scenario.params()}):\n  " + '\n  '.join(problems))
    return out


def write_json(path: Path, obj):
    """Writes JSON atomically (temporary file renamed into place)."""
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(obj, f, indent=1)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, what: str) -> dict:
    """Reads a JSON file; a corrupted one raises `CacheError` naming the file and what it should hold."""
    try:
        return json.loads(Path(path).read_text())
    except ValueError as err:
        raise CacheError(f"{path} is not valid JSON ({err}); it should hold {what}. Delete it to have it rebuilt.") from None


def _dtype_name(t: Tensor) -> str:
    """NumPy-style name of a tensor's own dtype, e.g. `'float32'`."""
    kind = {float: 'float', int: 'int', complex: 'complex', bool: 'bool'}[t.dtype.kind]
    return kind if kind == 'bool' else f'{kind}{t.dtype.bits}'


def _index(i) -> int:
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0:
        raise ValueError(f"Sim indices and counts must be integers >= 0, got {i!r}")
    return int(i)


def _file_identity(path: Path):
    try:
        s = path.stat()
    except FileNotFoundError:
        raise CacheError(f"Cache file {path} does not exist; run generate() to regenerate it.") from None
    return s.st_ino, s.st_size, s.st_mtime_ns


def _as_completed(executor, futures):
    """`as_completed` for both `concurrent.futures` and `dask.distributed` futures."""
    if hasattr(executor, 'gather'):  # dask.distributed.Client
        from distributed import as_completed
        return as_completed(list(futures))
    from concurrent.futures import as_completed
    return as_completed(futures)
