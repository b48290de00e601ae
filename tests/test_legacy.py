"""Legacy torch caches -> PhiML cache: named dims restored, values exact, unsafe files refused."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, arrays
from phiml_data import (
    Burgers1D,
    Burgers2D,
    DataManager,
    SmokePlume,
    simulate,
)
from phiml_data.legacy import migrate_legacy, phiml_to_legacy


def write_legacy(path, scenario, index):
    """A legacy cache file as the old pipeline wrote it: fields as torch.Tensor[C, T, H, W]."""
    sim = simulate(scenario, [index])[0]
    data = {k: torch.from_numpy(phiml_to_legacy(v, scenario.spatial_dims).copy()) for k, v in sim.items()}
    torch.save({'tensor_data': data, 'metadata': {'dt': scenario.dt}}, path)
    return sim


@pytest.mark.parametrize(
    'scenario', [Burgers2D(resolution=16, steps=2), Burgers1D(resolution=32, steps=3)], ids=lambda s: s.name
)
def test_migration_restores_named_dims_exactly(tmp_path, scenario):
    legacy = tmp_path / 'legacy'
    legacy.mkdir()
    originals = {i: write_legacy(legacy / f'sim_{i:06d}.pt', scenario, i) for i in (0, 2)}
    dm = DataManager(tmp_path / 'cache', scenario)
    assert migrate_legacy(legacy, dm, progress=False) == [0, 2]
    for i, original in originals.items():
        loaded = dm.load_phiml_cache(i)
        for k in original:
            assert loaded[k].shape == original[k].shape
            np.testing.assert_array_equal(arrays(loaded[k]), arrays(original[k]))


def test_staggered_fields_are_refused_since_centred_samples_lose_the_faces(tmp_path):
    scenario = SmokePlume(resolution=16, steps=2)
    write_legacy(tmp_path / 'sim_000000.pt', scenario, 0)
    dm = DataManager(tmp_path / 'cache', scenario)
    with pytest.raises(ValueError, match=r"(?s)sim_000000.pt refused: .*field 'velocity' is staggered: .* regenerate"):
        migrate_legacy(tmp_path, dm, progress=False)
    assert dm.cached_indices() == []


def test_legacy_errors_name_file_and_field(tmp_path):
    scenario = SmokePlume(resolution=16, steps=1)
    dm = DataManager(tmp_path / 'cache', scenario)
    bad = tmp_path / 'sim_000001.pt'
    torch.save({'tensor_data': {'velocity': torch.zeros(2, 2, 16, 16)}, 'metadata': {}}, bad)
    with pytest.raises(ValueError, match=r"(?s)sim_000001.pt refused: .*no field\(s\) \['density', 'inflow'\]"):
        migrate_legacy(bad, dm, progress=False)
    torch.save(
        {
            'tensor_data': {
                'velocity': torch.zeros(3, 2, 16, 16),
                'density': torch.zeros(1, 2, 16, 16),
                'inflow': torch.zeros(1, 1, 16, 16),
            }
        },
        bad,
    )
    with pytest.raises(ValueError, match=r"(?s)sim_000001.pt refused: .*field 'velocity': Legacy vector field has C=3"):
        migrate_legacy(bad, dm, progress=False)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='No legacy cache files'):
        migrate_legacy(tmp_path / 'empty', dm, progress=False)
    with pytest.raises(FileNotFoundError, match='sim_9.pt does not exist'):
        migrate_legacy(tmp_path / 'sim_9.pt', dm, progress=False)


class _Evil:
    def __reduce__(self):
        return (print, ('pwned',))


def test_files_that_would_run_code_are_refused(tmp_path):
    path = tmp_path / 'sim_000000.pt'
    torch.save({'tensor_data': {'velocity': _Evil()}, 'metadata': {}}, path)
    with pytest.raises(Exception, match='Weights only load failed|Unsupported'):
        migrate_legacy(path, DataManager(tmp_path / 'c', Burgers1D(resolution=32, steps=1)), progress=False)


@pytest.mark.slow
def test_cli_migrate(tmp_path):

    scenario = Burgers1D(resolution=32, steps=3)
    legacy = tmp_path / 'legacy'
    legacy.mkdir()
    write_legacy(legacy / 'sim_000004.pt', scenario, 4)
    config = tmp_path / 'c.yaml'
    config.write_text(
        f"scenario: {{name: burgers1d, resolution: [32], steps: 3}}\ndata: {{cache_dir: '{tmp_path / 'cache'}'}}\n"
    )
    out = subprocess.run(
        [sys.executable, '-m', 'phiml_data', 'migrate', str(legacy), '--config', str(config), '--quiet'],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert 'migrated 1 sims' in out.stdout and DataManager(tmp_path / 'cache', scenario).cached_indices() == [4]


def test_migrate_refuses_a_legacy_file_of_another_size_naming_the_file(tmp_path):
    torch = pytest.importorskip('torch')
    legacy = tmp_path / 'legacy' / 'sim_000000.pt'
    legacy.parent.mkdir()
    torch.save({'tensor_data': {'velocity': torch.zeros(2, 11, 16, 16)}, 'metadata': {'dt': 0.1}}, legacy)
    from phiml_data.legacy import migrate_legacy

    dm = DataManager(tmp_path / 'cache', Burgers2D(resolution=32, steps=40))
    with pytest.raises(ValueError) as err:
        migrate_legacy(legacy.parent, dm, progress=False)
    text = str(err.value)
    assert f'Legacy file {legacy} refused' in text and 'dt=0.1; scenario has dt=0.05' in text
    dm2 = DataManager(tmp_path / 'cache2', Burgers2D(resolution=32, steps=40))
    torch.save({'tensor_data': {'velocity': torch.zeros(2, 11, 16, 16)}}, legacy)
    with pytest.raises(
        ValueError, match=r"(?s)refused.*has shape \(time:b=11,x:s=16,y:s=16.*needs \(time:b=41,x:s=32,y:s=32"
    ):
        migrate_legacy(legacy.parent, dm2, progress=False)
    assert dm.cached_indices() == dm2.cached_indices() == []


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_a_legacy_file_that_would_run_code_when_unpickled_is_refused_and_runs_nothing(tmp_path):
    torch = pytest.importorskip('torch')
    marker = tmp_path / 'pwned'
    torch.save({'tensor_data': {'velocity': _RunsCode(marker)}, 'metadata': {}}, tmp_path / 'sim_000000.pt')
    with pytest.raises(ValueError, match=r'cannot be loaded safely \(torch.load with weights_only=True'):
        migrate_legacy(tmp_path / 'sim_000000.pt', DataManager(tmp_path / 'cache', Burgers2D(resolution=16, steps=2)))
    assert not marker.exists()
