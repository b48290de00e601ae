"""Issue #13: feeding existing training code: torch DataLoader, NumPy / JAX arrays."""

import numpy as np
import pytest

from phiml_data import Burgers2D, DataManager, PhiMLDataset
from phiml_data.arrays import to_arrays

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


@pytest.mark.parametrize('fmt', ['netcdf', 'zarr'])
def test_export_round_trips_through_xarray(dm, tmp_path, fmt):
    xr = pytest.importorskip('xarray')
    from phiml_data.export import export

    path = export(dm, tmp_path / f'out.{fmt}', fmt, sims=[1, 3])
    ds = xr.open_dataset(path, engine='h5netcdf') if fmt == 'netcdf' else xr.open_zarr(path)
    assert ds['velocity'].dims == ('sim', 't', 'x', 'y', 'vector') and list(ds['sim'].values) == [1, 3]
    np.testing.assert_array_equal(
        ds['velocity'].sel(sim=3).values, dm.load_phiml_cache(3)['velocity'].numpy('time,x,y,vector')
    )
    np.testing.assert_allclose(ds['x'].values, (np.arange(16) + 0.5) * dm.scenario.length / 16)
    np.testing.assert_allclose(ds['t'].values, np.arange(9) * 0.05)
    assert ds.attrs['cache_key'] == dm.key and ds['velocity'].attrs['boundary'] == 'periodic'


@pytest.mark.slow
def test_cli_import_and_export(tmp_path):
    import subprocess
    import sys

    from benchmark_files import write_pdebench

    from conftest import ROOT
    from phiml_data import Burgers1D

    one_d = Burgers1D(resolution=32, steps=4)
    write_pdebench(tmp_path / 'p.hdf5', np.zeros((3, 5, 32)), one_d)
    config = tmp_path / 'c.yaml'
    config.write_text(
        f"scenario: {{name: burgers1d, resolution: [32], steps: 4}}\ndata: {{cache_dir: '{tmp_path / 'cache'}', n_sims: 3}}\n"
    )
    run = lambda *a: subprocess.run(
        [sys.executable, '-m', 'phiml_data', *map(str, a)], capture_output=True, text=True, cwd=ROOT
    )
    result = run('import', tmp_path / 'p.hdf5', '--from', 'pdebench', '--config', config)
    assert result.returncode == 0 and 'imported 3 trajectories' in result.stdout, result.stderr
    result = run('export', tmp_path / 'out.nc', '--config', config, '--indices', '0-1')
    assert result.returncode == 0 and (tmp_path / 'out.nc').exists(), result.stderr
