"""Issue #13: feeding existing training code: torch DataLoader, NumPy / JAX arrays."""

import numpy as np
import pytest

from phiml_data import Burgers2D, DataManager, PhiMLDataset
from phiml_data.dataset import to_arrays

torch = pytest.importorskip('torch')


@pytest.fixture(scope='module')
def dm(tmp_path_factory):
    manager = DataManager(tmp_path_factory.mktemp('interop'), Burgers2D(resolution=16, steps=8))
    manager.generate(4, progress=False)
    return manager


def test_arrays_match_the_named_batch_in_both_layouts(dm):
    ds = PhiMLDataset(dm, n_input=2, n_targets=3, batch_size=5, normalize=False)
    b = next(ds.iterate_batches())
    last = to_arrays(b)
    first = to_arrays(b, channels_first=True)
    assert last['initial_state'].shape == (5, 16, 16, 4) and first['initial_state'].shape == (5, 4, 16, 16)
    assert last['targets'].shape == (5, 3, 16, 16, 2) and first['targets'].shape == (5, 3, 2, 16, 16)
    np.testing.assert_array_equal(first['targets'], np.moveaxis(last['targets'], -1, 2))
    # channels = frames oldest first, each with the input channels: frame 1, velocity.y
    np.testing.assert_array_equal(
        last['initial_state'][..., 3], b['initial_state'].history[1].channels['velocity.y'].numpy('batch,x,y')
    )


def test_a_plain_torch_module_trains_from_a_dataloader(dm):
    from torch.utils.data import DataLoader

    from phiml_data.torch import TorchBatches

    torch.manual_seed(0)
    model = torch.nn.Conv2d(2, 2, 3, padding=1, padding_mode='circular')  # not a phiml.nn network
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batches = TorchBatches(PhiMLDataset(dm, n_targets=1, batch_size=8))
    losses = []
    for epoch in range(4):
        batches.set_epoch(epoch)
        total = []
        for b in DataLoader(batches, batch_size=None):
            loss = torch.mean((b['initial_state'] + model(b['initial_state']) - b['targets'][:, 0]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total.append(loss.item())
        losses.append(np.mean(total))
    assert losses[-1] < 0.7 * losses[0], losses


def test_dataloader_workers_read_each_window_of_an_epoch_once(dm):
    from torch.utils.data import DataLoader

    from phiml_data.torch import TorchBatches

    ds = PhiMLDataset(dm, n_targets=2, batch_size=3, normalize=False)
    batches = TorchBatches(ds, epoch=2)
    seen = np.concatenate([b['window_ids'].numpy() for b in DataLoader(batches, batch_size=None, num_workers=2)])
    assert len(seen) == len(set(seen.tolist())) == len(ds) // 2 * 2  # equal shards; the remainder waits
    single = next(iter(DataLoader(TorchBatches(ds, epoch=2), batch_size=None)))
    expected = to_arrays(next(ds.iterate_batches(epoch=2)), channels_first=True)
    np.testing.assert_array_equal(single['targets'].numpy(), expected['targets'])
