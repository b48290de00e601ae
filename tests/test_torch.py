"""`phiml_data.torch.TorchBatches`: DataLoader workers together read every window of an epoch exactly once, and
`set_epoch` reaches workers that persist between epochs."""

import numpy as np
import pytest

from phiml_data import PhiMLDataset
from phiml_data.arrays import to_arrays

torch = pytest.importorskip('torch')
from torch.utils.data import DataLoader  # noqa: E402

from phiml_data.torch import TorchBatches  # noqa: E402


def _ids(loader):
    return np.concatenate([b['window_ids'].numpy() for b in loader])


@pytest.mark.filterwarnings('ignore:This DataLoader will create')
@pytest.mark.parametrize('workers', [2, 3])
@pytest.mark.parametrize('shuffle', [False, True])
def test_workers_read_every_window_exactly_once(burgers_dm, workers, shuffle):
    ds = PhiMLDataset(burgers_dm, sims=range(5), n_targets=2, batch_size=4, normalize=False, shuffle=shuffle)
    assert len(ds) % workers  # a remainder that the old equal shares dropped
    seen = _ids(DataLoader(TorchBatches(ds, epoch=2), batch_size=None, num_workers=workers))
    assert sorted(seen.tolist()) == list(range(len(ds)))


def test_one_process_yields_the_datasets_own_batches(burgers_dm):
    ds = PhiMLDataset(burgers_dm, sims=[0, 1], n_targets=2, batch_size=3, normalize=False)
    single = next(iter(DataLoader(TorchBatches(ds, epoch=2), batch_size=None)))
    expected = to_arrays(next(ds.iterate_batches(epoch=2)), channels_first=True)
    np.testing.assert_array_equal(single['targets'].numpy(), expected['targets'])


def test_set_epoch_reaches_persistent_workers(burgers_dm):
    ds = PhiMLDataset(burgers_dm, sims=[0, 1], n_targets=2, batch_size=4, normalize=False)
    batches = TorchBatches(ds)
    loader = DataLoader(batches, batch_size=None, num_workers=2, persistent_workers=True)
    orders = []
    for epoch in range(3):
        batches.set_epoch(epoch)
        orders.append(_ids(loader).tolist())
    assert orders[0] != orders[1] != orders[2]  # before, every epoch repeated epoch 0
    assert all(sorted(o) == list(range(len(ds))) for o in orders)
    assert orders[1][:4] == ds.epoch_order(1)[0::2][:4].tolist()  # worker 0's first batch of epoch 1


@pytest.mark.filterwarnings('ignore:This DataLoader will create')
@pytest.mark.parametrize('workers', [0, 1, 3])
def test_a_resumed_epoch_reads_exactly_the_windows_not_seen_yet_with_any_number_of_workers(burgers_dm, workers):
    """Issue #28.6: with 3 workers, resuming from the last batch's position after 4 batches read 85 of 117 windows."""
    ds = PhiMLDataset(burgers_dm, sims=range(5), n_targets=2, batch_size=4, normalize=False)
    batches = TorchBatches(ds)
    batches.set_epoch(1)
    seen = []
    for b in DataLoader(batches, batch_size=None, num_workers=workers):
        seen.append(b['window_ids'].numpy())
        if len(seen) == 4:
            position = b['position']
            break
    assert position == 4
    batches.set_epoch(1, position)
    rest = _ids(DataLoader(batches, batch_size=None, num_workers=workers))
    assert sorted(np.concatenate([*seen, rest]).tolist()) == list(range(len(ds)))
