"""The manifest of a cache directory and the small files beside it, written atomically.

Part of step 2 of the pipeline (scenarios -> manager (cache) -> dataset -> trainer). The manifest is plain JSON,
readable without this package, in two parts whose union is the manifest:

| file                          | content                                                                      |
|-------------------------------|------------------------------------------------------------------------------|
| `manifest.json`               | the compacted index: `{"key", "sims": {"<index>": entry}}`                   |
| `manifest.d/sim_000123.json`  | one entry written since the last compaction, or `{"removed": true}`         |

An entry is `{"file", "bytes", "origin", "fields": {name: {"shape", "dtype", "digest"}}}`. Recording a sim writes
one small file (atomic rename, no lock), so its cost does not grow with the cache; `compact()` folds the entry files
into the index under an `flock` on `manifest.lock` (`generate` does it once at its end). Readers list the entry files
first and read the index last, so an entry being compacted is always found in one of the two.
"""

from __future__ import annotations

import contextlib
import errno
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


def flock_unsupported(err: OSError) -> bool:
    """Whether `err` says the filesystem does not support `flock` (e.g. Lustre mounted with `noflock`)."""
    return err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class Manifest:
    """`manifest.json` and `config.json` of one cache directory.

    Args:
        directory: The cache directory.
        key: The cache key (written into both files).
        payload: What the key hashes (`keys.key_payload`), the content of `config.json`.
    """

    def __init__(self, directory: Path, key: str, payload: dict):
        self.directory, self.key, self.payload = Path(directory), key, payload
        self.entries = self.directory / 'manifest.d'
        self._index = (None, {})
        self._pending = (None, {})

    def read(self) -> dict[int, dict]:
        """`{sim_index: entry}` of all recorded sims (a copy): the index merged with the entry files."""
        pending = self._read_pending()  # entry files first, the index last (see the module docstring)
        sims = dict(self._read_index())
        for i, entry in pending.items():
            if entry.get('removed'):
                sims.pop(i, None)
            else:
                sims[i] = entry
        return sims

    def _read_index(self) -> dict[int, dict]:
        path = self.directory / 'manifest.json'
        try:
            stat = path.stat()
        except FileNotFoundError:
            return {}
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._index[0] != version:  # re-read only when a compaction replaced it
            try:
                sims = {int(k): v for k, v in json.loads(path.read_text())['sims'].items()}
            except (ValueError, KeyError, TypeError) as err:
                raise CacheError(
                    f"Manifest {path} is corrupted ({err}); delete it and run generate() to rebuild it from the sim files."
                ) from None
            self._index = (version, sims)
        return self._index[1]

    def _read_pending(self) -> dict[int, dict]:
        try:
            stat = self.entries.stat()
        except FileNotFoundError:
            return {}
        if self._pending[0] == (stat.st_mtime_ns, stat.st_ino):
            return self._pending[1]
        pending = {}
        for name in os.listdir(self.entries):
            if name.startswith('sim_') and name.endswith('.json'):
                try:
                    pending[int(name[4:-5])] = read_json(self.entries / name, 'one manifest entry')
                except FileNotFoundError:  # compacted meanwhile: the index read next holds it
                    continue
        self._pending = ((stat.st_mtime_ns, stat.st_ino), pending)
        return pending

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
        """Records entries (and removals) as one small file each; the first call also writes `config.json`."""
        if not add and not remove:
            return
        self.check_config()
        if not (self.directory / 'config.json').exists():  # every writer writes the same content: no lock needed
            write_json(self.directory / 'config.json', {'key': self.key, **self.payload})
        self.entries.mkdir(parents=True, exist_ok=True)
        changes = {**{int(i): {'removed': True} for i in remove}, **{int(k): v for k, v in (add or {}).items()}}
        for i, entry in changes.items():
            write_json(self.entries / f'sim_{i:06d}.json', entry)

    def compact(self) -> bool:
        """Folds the entry files into `manifest.json` under the lock, then deletes them; returns whether it did.

        On a filesystem without `flock` nothing is compacted: readers merge the entry files, which stay correct.
        """
        if not self.entries.exists() or not os.listdir(self.entries):
            return False
        try:
            with self.locked():
                files = {n: os.stat(self.entries / n).st_ino for n in os.listdir(self.entries) if n.endswith('.json')}
                sims = self.read()
                index = {'key': self.key, 'sims': {str(k): sims[k] for k in sorted(sims)}}
                write_json(self.directory / 'manifest.json', index)
                for name, inode in files.items():  # only after the index holds them, and only the versions read
                    with contextlib.suppress(FileNotFoundError):
                        if os.stat(self.entries / name).st_ino == inode:
                            os.unlink(self.entries / name)
        except OSError as err:
            if not flock_unsupported(err):
                raise
            return False
        return True
