"""Epoch order (`phiml_data.sampler`): every window once, resume mid-epoch, disjoint shards."""

import numpy as np
import pytest

from conftest import arrays
from phiml_data import PhiMLDataset


def all_ids(ds, **kw):
    return np.concatenate([arrays(b['window_ids']) for b in ds.iterate_batches(**kw)])


def test_every_window_exactly_once_and_last_partial_batch(burgers_dm):
    ds = PhiMLDataset(burgers_dm, n_targets=3, hop=2, normalize=False)
    assert len(ds) == 8 * len(range(0, 13 - 4 + 1, 2))
    ids = all_ids(ds, batch_size=7)
    assert sorted(ids.tolist()) == list(range(len(ds)))
    sizes = [b['targets'].shape.get_size('batch') for b in ds.iterate_batches(7)]
    assert sizes[-1] == len(ds) % 7 and len(sizes) == ds.n_batches(7)
    dropped = [b['targets'].shape.get_size('batch') for b in ds.iterate_batches(7, drop_last=True)]
    assert set(dropped) == {7} and len(dropped) == len(ds) // 7


def test_resume_mid_epoch_gives_the_identical_remaining_stream(burgers_dm):
    ds = PhiMLDataset(burgers_dm, n_targets=2, augment=True)
    full = list(ds.iterate_batches(6, epoch=1))
    seen = []
    for b in ds.iterate_batches(6, epoch=1):
        seen.append(b)
        if len(seen) == 4:
            break
    state = {'epoch': seen[-1]['epoch'], 'start': seen[-1]['position']}
    rest = list(ds.iterate_batches(6, **state))
    assert len(seen) + len(rest) == len(full)
    assert len(rest) == len(full) - 4
    for a, b in zip(full[4:], rest):
        np.testing.assert_array_equal(arrays(a['targets']), arrays(b['targets']))
        np.testing.assert_array_equal(arrays(a['window_ids']), arrays(b['window_ids']))


def test_shards_are_disjoint_equal_and_cover_the_epoch_but_the_remainder(burgers_dm):
    n = len(PhiMLDataset(burgers_dm, n_targets=2, normalize=False))
    for world in (3, 5):
        shards = [
            all_ids(PhiMLDataset(burgers_dm, n_targets=2, normalize=False, shard=(r, world)), batch_size=4, epoch=5)
            for r in range(world)
        ]
        joined = np.concatenate(shards)
        assert len(joined) == len(set(joined.tolist())) == n // world * world  # the remainder waits for another epoch
        assert {len(s) for s in shards} == {n // world}  # equal steps on every rank
    whole = all_ids(PhiMLDataset(burgers_dm, n_targets=2, normalize=False), batch_size=4, epoch=5)
    assert sorted(whole.tolist()) == list(range(n))
    with pytest.raises(ValueError, match=r'rank must be in 0..2'):
        PhiMLDataset(burgers_dm, shard=(3, 3))
