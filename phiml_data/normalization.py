"""Per-field normalisation statistics, computed in one streaming pass and stored with the cache.

Scalar fields are shifted by their mean and scaled by their standard deviation. Vector fields are not shifted and
use one scale for all components (the RMS of a component), so flips and rotations commute with normalisation.

Statistics live beside the cache (`stats-<hash>.json`, the hash covering cache key, fields and training sims, in
`Cache.side_path`: the cache directory, or a per-user folder for a read-only shared cache), so they can never
be applied to another configuration or a stale split.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from phiml import math
from phiml.math import Tensor, channel

from ._windows import TrajectorySource, field_of
from .manifest import read_json, write_json


def field_stats(source: TrajectorySource, fields, progress: bool = False) -> dict[str, dict]:
    """`{field: {'offset': float, 'scale': float}}` over the sims of `source`, cached beside its cache.

    Reads through the dataset's own source (the memory arrays it trains from, or its verified files), one sim at a
    time (memory: one trajectory), accumulating in float64.
    """
    cache, sims = source.cache, sorted(int(s) for s in source.sims)
    digest = hashlib.sha256(json.dumps([cache.key, sorted(fields), sims]).encode()).hexdigest()[:16]
    path = cache.side_path(f'stats-{digest}.json')
    if path.exists():
        saved = read_json(path, 'normalisation statistics')
        if set(saved.get('fields', {})) == set(fields):
            return saved['fields']
    from tqdm.auto import tqdm

    sums = {f: np.zeros(3) for f in fields}  # count, sum, sum of squares
    trajectories = tqdm(source.trajectories(list(fields)), 'statistics', len(sims), unit='sim', disable=not progress)
    for data in trajectories:
        for f in fields:
            a = data[f].astype(np.float64)
            sums[f] += (a.size, a.sum(), np.square(a).sum())
    stats = {}
    for f in fields:
        n, total, sq = sums[f]
        vector = cache.scenario.fields[f].vector
        offset = 0.0 if vector else total / n
        scale = float(np.sqrt(max(sq / n - offset**2, 0.0)))
        stats[f] = {'offset': float(offset), 'scale': scale if scale > 0 else 1.0}
    write_json(path, {'key': cache.key, 'sims': sims, 'fields': stats})
    return stats


def channel_stats(stats: dict[str, dict], channels: list[str]) -> tuple[Tensor, Tensor]:
    """Offset and scale as `Tensor (channelsᶜ)` for packed channel items like `velocity.x`."""
    field = [field_of(c) for c in channels]
    dim = channel(channels=','.join(channels))
    offset = math.tensor(np.array([stats[f]['offset'] for f in field], np.float32), dim, convert=False)
    scale = math.tensor(np.array([stats[f]['scale'] for f in field], np.float32), dim, convert=False)
    return offset, scale  # NumPy: batches built in a prefetch thread must not depend on another thread's backend


def normalize(t: Tensor, stats: dict, channels: list[str] = None) -> Tensor:
    """`(t - offset) / scale` per channel of a packed tensor `Tensor (..., channelsᶜ)`."""
    offset, scale = channel_stats(stats, channels or list(t.shape['channels'].item_names[0]))
    return (t - offset) / scale


def denormalize(t: Tensor, stats: dict, channels: list[str] = None) -> Tensor:
    """Inverse of `normalize`."""
    offset, scale = channel_stats(stats, channels or list(t.shape['channels'].item_names[0]))
    return t * scale + offset
