"""The manifest of a cache directory and the small files beside it, written atomically and under a lock.

Part of step 2 of the pipeline (scenarios -> manager (cache) -> dataset -> trainer). `manifest.json` is plain JSON,
readable without this package: `{"key": ..., "sims": {"<index>": {"file", "bytes", "origin", "fields": {name:
{"shape", "dtype", "digest"}}}}}`. Writers update it under an `flock` on `manifest.lock` and replace it atomically;
readers re-read it only when its inode, size or modification time changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path

from .formats import CacheError
from .keys import differences


def sim_file_name(sim_index: int, suffix: str) -> str:
    """File name of a sim, e.g. `sim_000003.h5`.

    Example:
        >>> sim_file_name(3, '.h5')
        'sim_000003.h5'
    """
    return f'sim_{int(sim_index):06d}{suffix}'


def write_json(path: Path, obj):
    """Writes JSON atomically (temporary file renamed into place)."""
    fd, tmp = tempfile.mkstemp(prefix=f'.{Path(path).name}.', suffix='.tmp', dir=Path(path).parent)
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
        raise CacheError(
            f"{path} is not valid JSON ({err}); it should hold {what}. Delete it to have it rebuilt."
        ) from None


class Manifest:
    """`manifest.json` and `config.json` of one cache directory.

    Args:
        directory: The cache directory.
        key: The cache key (written into both files).
        payload: What the key hashes (`keys.key_payload`), the content of `config.json`.
    """

    def __init__(self, directory: Path, key: str, payload: dict):
        self.directory, self.key, self.payload = Path(directory), key, payload
        self._cache = (None, {})

    def read(self) -> dict[int, dict]:
        """`{sim_index: entry}` of all recorded sims (a copy)."""
        path = self.directory / 'manifest.json'
        try:
            stat = path.stat()
        except FileNotFoundError:
            return {}
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._cache[0] != version:  # re-read only when another writer replaced it
            try:
                sims = {int(k): v for k, v in json.loads(path.read_text())['sims'].items()}
            except (ValueError, KeyError, TypeError) as err:
                raise CacheError(
                    f"Manifest {path} is corrupted ({err}); delete it and run generate() to rebuild it from the sim files."
                ) from None
            self._cache = (version, sims)
        return dict(self._cache[1])

    def present(self) -> list[int]:
        """Sorted indices of the recorded sims whose file is present (one directory listing)."""
        sims = self.read()
        names = set(os.listdir(self.directory)) if sims else set()
        return sorted(i for i, e in sims.items() if e['file'] in names)

    def check_config(self):
        """Refuses a directory whose `config.json` describes another configuration, naming each difference."""
        path = self.directory / 'config.json'
        if not path.exists():
            return
        saved = read_json(path, f"the configuration of the cache {sorted(self.payload)}")
        diff = differences({k: v for k, v in saved.items() if k != 'key'}, self.payload)
        if diff:
            raise CacheError(f"{path} describes another configuration than this DataManager's:\n  " + '\n  '.join(diff))

    @contextlib.contextmanager
    def locked(self):
        """Exclusive lock on this manifest, across processes (released if the holder dies)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / 'manifest.lock', 'w') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def update(self, add: dict[int, dict] = None, remove=()):
        """Adds and removes entries under the lock, writing `config.json` (first time) and the manifest atomically."""
        if not add and not remove:
            return
        with self.locked():
            self.check_config()
            if not (self.directory / 'config.json').exists():
                write_json(self.directory / 'config.json', {'key': self.key, **self.payload})
            sims = {**self.read(), **{int(k): v for k, v in (add or {}).items()}}
            for i in remove:
                sims.pop(int(i), None)
            write_json(
                self.directory / 'manifest.json', {'key': self.key, 'sims': {str(k): sims[k] for k in sorted(sims)}}
            )
