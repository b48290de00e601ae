"""DataManager: the on-disk cache of simulations, one self-describing file per simulation.

Step 2 of the pipeline (scenarios -> manager -> dataset -> trainer). The manager owns a cache directory per
configuration, named by a hash of everything that determines the data, and a manifest of what it holds.

Layout of `cache_dir / <scenario>-<key>`:

| file              | content                                                                   |
|-------------------|---------------------------------------------------------------------------|
| `config.json`     | scenario parameters, library versions, format: everything the key hashes  |
| `manifest.json`   | per sim: file name, and per field its shape spec, dtype and SHA-256       |
| `sim_000000.h5`   | one simulation (see `phiml_data._format` for the HDF5 layout)             |
| `stats.json`      | normalisation statistics of the training split (written by the dataset)   |
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
from phiml import math
from phiml.math import Tensor

from . import _format
from ._format import CacheError
from .scenarios import Scenario, field_values, simulate

FORMATS = {'h5': (_format.write_h5, _format.read_h5), 'npz': (_format.write_npz, _format.read_npz)}


class SimulationData(dict):
    """`{field: Tensor}` of one cached simulation, with its metadata dict as `.metadata`.

    Dynamic fields: `Tensor (timeᵇ, xˢ, [yˢ], [vectorᶜ])`; static fields: `Tensor (xˢ, [yˢ])`.
    """

    def __init__(self, fields: dict[str, Tensor], metadata: dict):
        super().__init__(fields)
        self.metadata = metadata


def library_versions() -> dict[str, str]:
    """Versions of the pinned libraries the cached data depends on."""
    import phi
    import phiml
    return {'phiml': phiml.__version__, 'phiflow': phi.__version__}


def cache_key(scenario: Scenario, fmt: str = 'h5') -> str:
    """Hash of everything that determines the cached data: scenario parameters, versions, format."""
    payload = _key_payload(scenario, fmt)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _key_payload(scenario: Scenario, fmt: str) -> dict:
    return {'params': scenario.params(), 'versions': library_versions(), 'format': fmt, 'format_version': _format.FORMAT_VERSION}


class DataManager:
    """Creates, reads and validates the cache of one scenario configuration.

    Args:
        cache_dir: Root folder of all caches; this configuration lives in `cache_dir/<scenario>-<key>`.
        config: The scenario (a frozen `Scenario` dataclass).
        fmt: `'h5'` (default: lazy window reads, safe to load) or `'npz'` (PhiML's `math.save`; its loader
            unpickles, so only open `.npz` caches you wrote yourself).

    Example:
        >>> dm = DataManager('cache', Burgers2D(resolution=16, steps=8))
        >>> dm.generate(4)
        >>> sim = dm.load_phiml_cache(0)
        >>> sim['velocity'].shape, sim.metadata['dt']
        ((timeᵇ=9, xˢ=16, yˢ=16, vectorᶜ=x,y), 0.05)
    """

    def __init__(self, cache_dir, config: Scenario, fmt: str = 'h5'):
        if fmt not in FORMATS:
            raise ValueError(f"Unknown cache format '{fmt}'; valid: {sorted(FORMATS)}")
        self.config = config
        self.fmt = fmt
        self.key = cache_key(config, fmt)
        self.directory = Path(cache_dir) / f'{config.name}-{self.key}'
        self._manifest_cache = (None, {})

    def __repr__(self):
        return f"DataManager({self.directory}, {len(self.manifest())} sims cached)"

    # --- paths and manifest ---

    def path(self, sim_index: int) -> Path:
        """File of simulation `sim_index` (whether or not it exists)."""
        return self.directory / f'sim_{int(sim_index):06d}.{self.fmt}'

    def manifest(self) -> dict[int, dict]:
        """`{sim_index: {'file', 'fields': {name: {'shape', 'dtype', 'sha256'}}}}` of all complete sims."""
        path = self.directory / 'manifest.json'
        try:
            stat = path.stat()
        except FileNotFoundError:
            return {}
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._manifest_cache[0] != version:  # re-read only when another writer replaced it
            try:
                sims = {int(k): v for k, v in json.loads(path.read_text())['sims'].items()}
            except (ValueError, KeyError) as err:
                raise CacheError(f"Manifest {path} is corrupted ({err}); delete it and run generate() to rebuild it from the sim files.") from None
            self._manifest_cache = (version, sims)
        return dict(self._manifest_cache[1])

    def cached_indices(self) -> list[int]:
        """Sorted indices of the sims in the manifest."""
        return sorted(self.manifest())

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

    def _record(self, entries: dict[int, dict]):
        """Adds manifest entries under the lock, writing the manifest atomically."""
        if not entries:
            return
        with self._locked():
            self._write_config()
            sims = {**self.manifest(), **{int(k): v for k, v in entries.items()}}
            _write_json(self.directory / 'manifest.json', {'key': self.key, 'sims': {str(k): sims[k] for k in sorted(sims)}})

    def _write_config(self):
        path = self.directory / 'config.json'
        if not path.exists():
            _write_json(path, {'key': self.key, **_key_payload(self.config, self.fmt)})

    # --- writing ---

    def save_phiml_cache(self, sim_index: int, field_data: dict[str, Tensor]) -> dict:
        """Validates and writes one simulation, then records it in the manifest.

        Args:
            sim_index: Index of the simulation.
            field_data: `{field: Tensor}` with exactly the scenario's fields. Dynamic fields
                `Tensor (timeᵇ, xˢ, [yˢ], [vectorᶜ])`, static fields without `time`.

        Returns:
            The manifest entry of the sim.

        Raises:
            ValueError: Missing or unknown fields, wrong dims, or NaN / Inf values (names the sim and parameters).
        """
        entry = _write_sim(self.directory, self.path(sim_index), self.config, self.fmt, sim_index, field_data)
        self._record({sim_index: entry})
        return entry

    def generate(self, n_sims: int | list[int], executor: Executor = None, batch_size: int = 8, progress: bool = True) -> list[int]:
        """Simulates and caches the sims that are not cached yet.

        Batchable scenarios run `batch_size` sims per vectorised run. With an `executor` (e.g. a
        `concurrent.futures.ProcessPoolExecutor` or a `dask.distributed.Client`), chunks run there; workers
        write their files into the cache directory and return only manifest entries.

        Args:
            n_sims: Number of sims (indices `0..n_sims-1`) or an explicit list of indices.
            executor: Where to run the chunks; `None` runs them in this process.
            batch_size: Sims per chunk (one vectorised run for batchable scenarios).
            progress: Show a progress bar.

        Returns:
            The indices that were generated by this call.
        """
        from tqdm import tqdm
        indices = list(range(n_sims)) if isinstance(n_sims, int) else [int(i) for i in n_sims]
        self._adopt_orphans(indices)
        missing = self._missing(indices)
        bar = tqdm(total=len(missing), desc=f'simulating {self.config.name}', unit='sim', disable=not progress or not missing)
        generated, todo, rounds = [], missing, 0
        try:
            while todo:
                rounds += 1
                if rounds > 3:
                    raise RuntimeError(f"Sims {todo[:10]} are still missing after {rounds - 1} rounds in {self.directory}")
                chunks = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
                for entries in self._run_chunks(chunks, executor, bar):
                    self._record(entries)
                    generated.extend(entries)
                todo = self._wait_for_other_writers(self._missing(todo))
        finally:
            bar.close()
        return sorted(generated)

    def _run_chunks(self, chunks, executor, bar):
        """Yields the manifest entries of each chunk as it finishes; raises after all ran if any failed."""
        args = (str(self.directory), self.config, self.fmt)
        if executor is None:
            for chunk in chunks:
                yield generate_chunk(*args, chunk)
                bar.update(len(chunk))
            return
        futures = {executor.submit(generate_chunk, *args, chunk): chunk for chunk in chunks}
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
                               f"Rerun generate() to complete them:\n{lines}")

    def _wait_for_other_writers(self, indices) -> list[int]:
        """Waits until no other process holds the claim on `indices`, adopts what they wrote; returns the rest."""
        for i in indices:
            with _claim(self.directory, i, block=True):
                pass
        self._adopt_orphans(indices)
        return self._missing(indices)

    def _missing(self, indices) -> list[int]:
        """Indices without a manifest entry or whose file was deleted (e.g. to regenerate a corrupted sim)."""
        manifest = self.manifest()
        return [i for i in indices if i not in manifest or not self.path(i).exists()]

    def _adopt_orphans(self, indices):
        """Records sims whose file was renamed into place but whose manifest entry was lost (crash in between).

        Unreadable files outside the manifest (another configuration, corrupted) are deleted, to be regenerated.
        """
        known = set(self.manifest())
        entries = {}
        for i in indices:
            if i not in known and self.path(i).exists():
                try:
                    fields, _ = self._read(i, None)
                except CacheError:
                    self.path(i).unlink(missing_ok=True)
                    continue
                entries[i] = {'file': self.path(i).name, 'fields': {k: _format._manifest_entry(v, _format.array_of(v)) for k, v in fields.items()}}
        self._record(entries)

    # --- reading ---

    def load_phiml_cache(self, sim_index: int, fields: list[str] = None) -> SimulationData:
        """Loads one cached simulation, fully into memory, checking it against this configuration.

        Args:
            sim_index: Index of the simulation.
            fields: Field names to load; all by default.

        Returns:
            `SimulationData`: `{field: Tensor}` exactly as saved (dims, types, item names, dtype, values),
            with `.metadata` (scenario, parameters, sim index, dt, bounds, resolution, per-field grid info).

        Raises:
            CacheError: Missing, truncated or corrupted file, a file from another configuration or sim, or a
                missing field. The message names the file and how to regenerate it.
        """
        try:
            data, metadata = self._read(sim_index, fields)
            self._check_fields(sim_index, data, fields)
        except CacheError as err:
            raise CacheError(f"{err}\nTo regenerate it, delete the file and run DataManager.generate() "
                             f"(or `python -m phiml_data generate`).") from None
        return SimulationData(data, metadata)

    def _read(self, sim_index, fields):
        path = self.path(sim_index)
        if not path.exists():
            cached = self.cached_indices()
            raise CacheError(f"Sim {sim_index} is not cached: {path} does not exist ({len(cached)} sims cached in {self.directory}).")
        entry = self.manifest().get(sim_index, {'fields': {}})
        expected = {k: v['sha256'] for k, v in entry['fields'].items()}

        def check(metadata):
            if metadata.get('cache_key') != self.key or metadata.get('sim_index') != sim_index:
                raise CacheError(f"Cache file {path} belongs to another configuration or sim "
                                 f"(key {metadata.get('cache_key')}, sim {metadata.get('sim_index')}; expected key {self.key}, sim {sim_index}).")
        return FORMATS[self.fmt][1](path, fields, expected, check)

    def _check_fields(self, sim_index, data, fields):
        path = self.path(sim_index)
        missing = [k for k in (self.config.fields if fields is None else fields) if k not in data]
        if missing:
            raise CacheError(f"Cache file {path} is missing field(s) {missing} of scenario '{self.config.name}'.")

    def load_metadata(self, sim_index: int) -> dict:
        """Metadata of one cached sim without reading its fields."""
        return self.load_phiml_cache(sim_index, fields=[]).metadata

    def summary(self) -> dict:
        """What the cache holds: directory, key, sims, fields with shape spec and dtype, size on disk in bytes."""
        manifest = self.manifest()
        first = manifest[min(manifest)]['fields'] if manifest else {}
        size = sum(p.stat().st_size for p in self.directory.glob(f'sim_*.{self.fmt}')) if self.directory.exists() else 0
        return {'directory': str(self.directory), 'key': self.key, 'scenario': self.config.params(), 'format': self.fmt,
                'sims': len(manifest), 'fields': {k: {'shape': v['shape'], 'dtype': v['dtype']} for k, v in first.items()},
                'bytes': size}

    # --- importing ---

    def import_scene(self, scene_path, sim_index: int) -> dict:
        """Imports a PhiFlow `Scene` directory (one `.npz` per field per frame) as sim `sim_index`.

        Every field of the scenario must be present in the scene; static fields are read from the first frame.
        """
        from phi.field import Scene
        scene = Scene.at(str(scene_path))
        names, frames = set(scene.fieldnames), scene.frames
        missing = [k for k in self.config.fields if k not in names]
        if missing:
            raise ValueError(f"Scene {scene_path} lacks field(s) {missing}; it has {sorted(names)} (frames {frames[:3]}...).")
        data = {}
        for name, spec in self.config.fields.items():
            if spec.static:
                data[name] = field_values(scene.read(name, frame=frames[0]))
            else:
                data[name] = math.stack([field_values(scene.read(name, frame=f)) for f in frames], math.batch('time'))
        return self.save_phiml_cache(sim_index, data)


def generate_chunk(directory: str, scenario: Scenario, fmt: str, indices: list[int]) -> dict[int, dict]:
    """Simulates and writes the sims of `indices` that no other writer has claimed or written (runs on workers).

    Returns:
        Manifest entries of the sims this call wrote; sims claimed by another process are left to it.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as claims:
        mine = [i for i in indices if claims.enter_context(_claim(directory, i)) and not (directory / f'sim_{i:06d}.{fmt}').exists()]
        return {i: _write_sim(directory, directory / f'sim_{i:06d}.{fmt}', scenario, fmt, i, data)
                for i, data in zip(mine, simulate(scenario, mine))}


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


def _write_sim(directory: Path, path: Path, scenario: Scenario, fmt: str, sim_index: int, field_data: dict) -> dict:
    _validate(scenario, sim_index, field_data)
    directory.mkdir(parents=True, exist_ok=True)
    metadata = {**scenario.metadata(sim_index), 'cache_key': cache_key(scenario, fmt)}
    fields = FORMATS[fmt][0](path, field_data, metadata)
    return {'file': path.name, 'fields': fields}


def _validate(scenario: Scenario, sim_index: int, field_data: dict):
    expected, got = set(scenario.fields), set(field_data)
    if expected != got:
        raise ValueError(f"Sim {sim_index}: fields {sorted(got)} do not match scenario '{scenario.name}' fields {sorted(expected)}.")
    for name, t in field_data.items():
        spec = scenario.fields[name]
        want = ([] if spec.static else ['time']) + list(scenario.spatial_dims) + (['vector'] if spec.vector else [])
        if not isinstance(t, Tensor) or sorted(t.shape.names) != sorted(want):
            raise ValueError(f"Sim {sim_index}: field '{name}' must be a Tensor with dims {want}, got {getattr(t, 'shape', type(t))}.")
        if not np.isfinite(_format.array_of(t)).all():
            raise ValueError(f"Sim {sim_index}: field '{name}' contains NaN or Inf; refusing to cache it. "
                             f"Parameters: {scenario.params()}. Reduce dt or check the scenario.")


def _write_json(path: Path, obj):
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    with os.fdopen(fd, 'w') as f:
        json.dump(obj, f, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _as_completed(executor, futures):
    """`as_completed` for both `concurrent.futures` and `dask.distributed` futures."""
    if hasattr(executor, 'gather'):  # dask.distributed.Client
        from distributed import as_completed
        return as_completed(list(futures))
    from concurrent.futures import as_completed
    return as_completed(futures)
