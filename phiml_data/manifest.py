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

A malformed entry (not an object, missing or mistyped keys, a `file` that is not the sim's own file name in the
directory) or a stray file in `manifest.d/` (e.g. `sim_000001 (copy).json`) never breaks the rest of the cache: it
is left out of `read()` and listed in `problems`, reading that sim raises an error naming the entry file, and
`generate()` moves it to `quarantine/` and adopts the sim's file again after checking all its frames.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import tempfile
import time
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


_ENTRY_NAME = re.compile(r'^sim_(\d{6,})\.json$')


def entry_problem(sim_index: int, entry) -> str | None:
    """Why `entry` is not a valid manifest entry of sim `sim_index`, or `None`.

    Example:
        >>> entry_problem(3, {'file': '../outside.h5', 'bytes': 1, 'origin': 'saved', 'fields': {}})
        "'file' must be the sim's own file name (sim_000003.<suffix>), got '../outside.h5'"
    """
    if entry == {'removed': True}:
        return None
    if not isinstance(entry, dict):
        return f"expected a JSON object, got {json.dumps(entry)[:60]}"
    name = entry.get('file')
    if not isinstance(name, str) or not re.fullmatch(rf'sim_{int(sim_index):06d}(\.[A-Za-z0-9]+)+', name):
        return f"'file' must be the sim's own file name (sim_{int(sim_index):06d}.<suffix>), got {name!r}"
    if not isinstance(entry.get('bytes'), int) or not isinstance(entry.get('origin'), str):
        return (
            f"'bytes' must be an integer and 'origin' a string, got {entry.get('bytes')!r} and {entry.get('origin')!r}"
        )
    fields = entry.get('fields')
    if not isinstance(fields, dict) or not all(
        isinstance(v, dict) and all(isinstance(v.get(k), str) for k in ('shape', 'dtype', 'digest'))
        for v in fields.values()
    ):
        return "'fields' must map each field name to its 'shape', 'dtype' and 'digest' strings"
    return None


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
        self._index = (None, {}, {})
        self._pending = (None, {}, {})

    def read(self) -> dict[int, dict]:
        """`{sim_index: entry}` of all recorded sims (a copy): the index merged with the entry files.

        Malformed entries and stray files are left out; `problems()` names them."""
        pending, bad = self._read_pending()  # entry files first, the index last (see the module docstring)
        sims = dict(self._read_index()[0])
        for i, _ in bad.values():  # a malformed newer entry: the sim counts as unrecorded until its file is adopted
            sims.pop(i, None)
        for i, entry in pending.items():
            if entry.get('removed'):
                sims.pop(i, None)
            else:
                sims[i] = entry
        return sims

    def problems(self) -> dict[Path, tuple[int | None, str]]:
        """`{entry file: (sim index or None, reason)}` of the malformed entries and stray files of the last `read()`;
        entries of `manifest.json` are named `manifest.json#<index>`."""
        return {**self._index[2], **self._pending[2]}

    def problem_of(self, sim_index: int) -> str | None:
        """A message naming the malformed entry of sim `sim_index`, or `None` if it has none."""
        for path, (i, reason) in self.problems().items():
            if i == int(sim_index):
                return f"its manifest entry {path} is malformed: {reason}"
        return None

    def _read_index(self) -> tuple[dict[int, dict], dict]:
        path = self.directory / 'manifest.json'
        try:
            stat = path.stat()
        except FileNotFoundError:
            return {}, {}
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._index[0] != version:  # re-read only when a compaction replaced it
            try:
                raw = json.loads(path.read_text())['sims']
                items = {int(k): v for k, v in raw.items()}
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                raise CacheError(
                    f"Manifest {path} is corrupted ({type(err).__name__}: {err}); delete it and run generate() to "
                    f"rebuild it from the sim files."
                ) from None
            sims, problems = _valid(items, lambda i: Path(f'{path}#{i}'))
            self._index = (version, sims, problems)
        return self._index[1:]

    def _read_pending(self) -> tuple[dict[int, dict], dict]:
        try:
            stat = self.entries.stat()
        except FileNotFoundError:
            return {}, {}
        if self._pending[0] == (stat.st_mtime_ns, stat.st_ino):
            return self._pending[1:]
        items, problems = {}, {}
        for name in os.listdir(self.entries):
            match = _ENTRY_NAME.match(name)
            if name.startswith('.') and name.endswith('.tmp'):  # an entry being written (`write_json`)
                continue
            if not match:
                problems[self.entries / name] = (None, "not a manifest entry file (expected sim_<index>.json)")
                continue
            try:
                items[int(match.group(1))] = json.loads((self.entries / name).read_text())
            except FileNotFoundError:  # compacted meanwhile: the index read next holds it
                continue
            except ValueError as err:
                problems[self.entries / name] = (int(match.group(1)), f"not valid JSON ({err})")
        pending, invalid = _valid(items, lambda i: self.entries / f'sim_{i:06d}.json')
        self._pending = ((stat.st_mtime_ns, stat.st_ino), pending, {**problems, **invalid})
        return self._pending[1:]

    def quarantine_problems(self) -> list[str]:
        """Moves malformed entry files and stray files of `manifest.d/` to `quarantine/manifest.d/` (with a
        `.reason.txt`) and drops malformed entries of `manifest.json` at the next compaction; returns what it did."""
        self.read()
        done = []
        for path, (_, reason) in self.problems().items():
            if path.parent == self.entries:
                target = self.directory / 'quarantine' / 'manifest.d'
                target.mkdir(parents=True, exist_ok=True)
                dest = target / f'{path.name}.{time.strftime("%Y%m%d-%H%M%S")}'
                with contextlib.suppress(FileNotFoundError):
                    os.replace(path, dest)
                    dest.with_name(dest.name + '.reason.txt').write_text(reason)
                    done.append(f"{path} moved to {dest}: {reason}")
            else:
                done.append(f"{path} dropped: {reason}")
        return done

    def present(self) -> list[int]:
        """Sorted indices of the recorded sims whose file is present (one directory listing)."""
        sims = self.read()
        with os.scandir(self.directory) if sims else contextlib.nullcontext(()) as entries:
            names = {e.name for e in entries if not e.is_symlink()}  # d_type: no extra stat per file
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
                files = {n: os.stat(self.entries / n).st_ino for n in os.listdir(self.entries) if _ENTRY_NAME.match(n)}
                sims = self.read()
                bad = {p.name for p, (i, _) in self.problems().items() if p.parent == self.entries}
                files = {n: inode for n, inode in files.items() if n not in bad}  # kept for the error and quarantine
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


def _valid(items: dict[int, object], where) -> tuple[dict[int, dict], dict[Path, tuple[int, str]]]:
    """Splits `{sim: entry}` into the valid entries and `{where(sim): (sim, reason)}` of the malformed ones."""
    valid, problems = {}, {}
    for i, entry in items.items():
        reason = entry_problem(i, entry)
        if reason:
            problems[where(i)] = (i, reason)
        else:
            valid[i] = entry
    return valid, problems
