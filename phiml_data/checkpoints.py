"""Checkpoints as commits: a training state becomes visible whole or not at all, and is only read back by a trainer
of the same configuration.

Part of step 4 of the pipeline (... -> dataset -> trainer). A checkpoint is a folder. Its parts (network weights,
optimiser state) are written first, each to a new file named after the epoch (`net-e0007.pth`); then one small
commit file, `state.json`, is written to a temporary sibling and renamed into place: it lists every part with its SHA-256, the trainer's state (epoch,
history, parameters) and the identity of what was trained (cache key, dataset and trainer configs). Parts that no
commit lists are deleted afterwards. A process killed at any point (`kill -9` included) leaves the previous commit and
its parts intact, so a resumed run continues from a complete state or fails with one clear error, never from a mix.

Reading (`read`) refuses, in one line naming the file: a missing or damaged commit, a part whose bytes differ from
its digest, an identity that differs from the reader's (naming the differing key), and non-finite numbers.

Example:
    >>> folder = tmp / 'ckpt'
    >>> commit(folder, {'epoch': 3, 'theta': [0.5]}, identity={'kind': 'toy', 'lr': 0.1})
    >>> read(folder, identity={'kind': 'toy', 'lr': 0.1})[0]['epoch']
    3
    >>> read(folder, identity={'kind': 'toy', 'lr': 0.2})
    Traceback (most recent call last):
    ...
    phiml_data.checkpoints.CheckpointError: Checkpoint .../ckpt/state.json was written by another configuration: lr is 0.1 there, 0.2 here
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Callable

from .manifest import write_json

COMMIT = 'state.json'


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, non-finite, or of another configuration; the message names the file."""


def commit(folder, state: dict, parts: dict[str, Callable[[Path], Path]] = None, identity: dict = None):
    """Writes a checkpoint to `folder` as one commit.

    Args:
        state: JSON-compatible trainer state (must hold `'epoch'` for part names); non-finite numbers are refused.
        parts: `{name: write(path_stem) -> written path}`; each writes one file next to the commit (e.g. via
            `nn.save_state`, which adds a suffix).
        identity: What the checkpoint belongs to (`read` compares it with the reader's).

    Raises:
        CheckpointError: `state` or `identity` hold non-finite numbers (nothing is written).
    """
    folder = Path(folder)
    _check_finite(state, folder / COMMIT)
    folder.mkdir(parents=True, exist_ok=True)
    listed = {}
    for name, write in (parts or {}).items():
        path = Path(write(folder / f"{name}-e{int(state.get('epoch', 0)):04d}"))
        listed[name] = {'file': path.name, 'sha256': _digest(path)}
    write_json(folder / COMMIT, {'state': state, 'parts': listed, 'identity': identity or {}})
    keep = {COMMIT, *(p['file'] for p in listed.values())}
    for path in folder.iterdir():
        if path.name not in keep and not path.name.startswith('.') and path.is_file():
            path.unlink(missing_ok=True)  # parts of earlier commits


def read(folder, identity: dict = None, what: str = 'checkpoint') -> tuple[dict, dict[str, Path]]:
    """The committed state of `folder` and the paths of its verified parts.

    Args:
        identity: What the reader is; every key it shares with the recorded identity must be equal.
        what: How messages name the checkpoint (e.g. `'network checkpoint'`).

    Raises:
        CheckpointError: See the module docstring; the message names the file.
    """
    file = Path(folder) / COMMIT
    if not file.exists():
        raise CheckpointError(f"No {what} in {folder} ({COMMIT} missing)")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{what.capitalize()} {file} is damaged (not valid JSON: {err})") from None
    if not isinstance(data, dict) or not {'state', 'parts', 'identity'} <= set(data) or not _all_dicts(data):
        raise CheckpointError(
            f"{what.capitalize()} {file} is damaged or not a checkpoint of this version: expected a JSON object with "
            f"'state', 'parts' and 'identity' objects"
        )
    difference = _first_difference(data['identity'], identity or {})
    if difference:
        raise CheckpointError(f"{what.capitalize()} {file} was written by another configuration: {difference}")
    _check_finite(data['state'], file)
    paths = {}
    for name, part in data['parts'].items():
        path = Path(folder) / str(part.get('file'))
        if Path(str(part.get('file'))).name != part.get('file') or not path.is_file():
            raise CheckpointError(f"{what.capitalize()} {file} lists part '{name}' as {path}, which is missing")
        if _digest(path) != part.get('sha256'):
            raise CheckpointError(f"{what.capitalize()} part {path} is damaged: its SHA-256 differs from {file}'s")
        paths[name] = path
    return data['state'], paths


def _first_difference(recorded: dict, expected: dict, prefix: str = '') -> str | None:
    """The first key both define with different values, as `'key is A there, B here'`."""
    for key in sorted(set(recorded) & set(expected)):
        a, b = recorded[key], json.loads(json.dumps(expected[key]))
        if isinstance(a, dict) and isinstance(b, dict):
            found = _first_difference(a, b, f'{prefix}{key}.')
            if found:
                return found
        elif a != b:
            return f"{prefix}{key} is {a!r} there, {b!r} here"
    return None


def _check_finite(value, file, path: str = ''):
    if isinstance(value, float) and not math.isfinite(value):
        raise CheckpointError(f"Checkpoint {file}: {path or 'a value'} is {value} (non-finite); refusing it")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, file, f'{path}.{k}' if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, file, f'{path}[{i}]')


def _all_dicts(data: dict) -> bool:
    return all(isinstance(data[k], dict) for k in ('state', 'parts', 'identity')) and all(
        isinstance(p, dict) for p in data['parts'].values()
    )


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()
