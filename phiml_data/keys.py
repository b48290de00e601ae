"""Cache keys: everything that determines a scenario's cached data, hashed into the name of its cache directory.

Part of step 2 of the pipeline (scenarios -> manager (cache) -> dataset -> trainer). The payload holds the
scenario's parameters and identity (class, field specs, version, source digest), the versions of the libraries the
data depends on and the storage format; `differences` names what two payloads disagree on, for error messages.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from .formats import FORMAT_VERSION
from .scenarios import Scenario


def library_versions() -> dict[str, str]:
    """Versions of the libraries the cached data depends on."""
    import phi
    import phiml

    return {'phiml': phiml.__version__, 'phiflow': phi.__version__, 'numpy': np.__version__}


def key_payload(scenario: Scenario, fmt: str) -> dict:
    """Everything that determines the cached data: parameters, scenario identity, library versions, format.

    Example:
        >>> from phiml_data import Burgers2D
        >>> sorted(key_payload(Burgers2D(), 'h5'))
        ['format', 'format_version', 'identity', 'params', 'versions']
    """
    return {
        'params': scenario.params(),
        'identity': scenario.identity(),
        'versions': library_versions(),
        'format': fmt,
        'format_version': FORMAT_VERSION,
    }


def cache_key(scenario: Scenario, fmt: str = 'h5') -> str:
    """16 hex digits of the SHA-256 of `key_payload(scenario, fmt)`.

    Example:
        >>> from phiml_data import Burgers2D
        >>> cache_key(Burgers2D(seed=1)) != cache_key(Burgers2D(seed=2))
        True
    """
    return hash_payload(key_payload(scenario, fmt))


def hash_payload(payload: dict) -> str:
    """16 hex digits of the SHA-256 of a key payload (canonical JSON)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def differences(found: dict, expected: dict, prefix: str = '') -> list[str]:
    """Leaf-by-leaf differences of two nested dicts.

    Example:
        >>> differences({'params': {'seed': 5}}, {'params': {'seed': 0}})
        ['params.seed: 5 (found) vs 0 (expected)']
    """
    out = []
    for k in sorted(set(found) | set(expected), key=str):
        a, b, path = found.get(k, '<missing>'), expected.get(k, '<missing>'), f'{prefix}{k}'
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, path + '.')
        elif a != b:
            out.append(f'{path}: {a!r} (found) vs {b!r} (expected)')
    return out
