"""Train / validation / test splits by simulation, and their record beside the cache.

Part of step 3 of the pipeline (scenarios -> manager -> dataset -> trainer): which sims a dataset may see.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from .cache import cache_of
from .manifest import write_json


def split_sims(indices, fractions=(0.75, 0.125, 0.125), seed: int = 0) -> dict[str, list[int]]:
    """Deterministic, disjoint train / val / test split by simulation.

    Every non-empty fraction gets at least one sim when there are enough sims.

    Example:
        >>> split_sims(range(8), (0.5, 0.25, 0.25))
        {'train': [0, 4, 6, 7], 'val': [2, 5], 'test': [1, 3]}
    """
    indices = sorted(int(i) for i in indices)
    order = [indices[i] for i in np.random.default_rng([seed, len(indices)]).permutation(len(indices))]
    n_val = max(int(round(fractions[1] * len(order))), 1 if fractions[1] > 0 and len(order) > 2 else 0)
    n_test = max(int(round(fractions[2] * len(order))), 1 if fractions[2] > 0 and len(order) > 2 else 0)
    n_train = len(order) - n_val - n_test
    return {
        'train': sorted(order[:n_train]),
        'val': sorted(order[n_train : n_train + n_val]),
        'test': sorted(order[n_train + n_val :]),
    }


def record_split(manager, split: dict, fractions, seed: int):
    """Writes the split to `split-<hash of fractions and seed>.json` beside the cache and returns its path.

    The file goes to `Cache.side_path(...)` of `manager` (a `DataManager` or `Cache`): the cache directory, or a
    per-user folder for a read-only shared cache.
    """
    tag = hashlib.sha256(json.dumps([list(fractions), seed]).encode()).hexdigest()[:8]
    path = cache_of(manager).side_path(f'split-{tag}.json')
    write_json(path, {'fractions': list(fractions), 'seed': seed, **split})
    return path
