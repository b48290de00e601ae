"""Exports (`phiml_data.export`) never touch what they do not own and never leave a partial file behind."""

import resource
import signal
from pathlib import Path

import numpy as np
import pytest

from phiml_data.export import export

xr = pytest.importorskip('xarray')


@pytest.fixture(scope='module')
def dm(tmp_path_factory):
    from phiml_data import Burgers2D, DataManager

    manager = DataManager(tmp_path_factory.mktemp('export'), Burgers2D(resolution=16, steps=4))
    manager.generate(3, progress=False)
    return manager


@pytest.mark.parametrize('fmt', ['netcdf', 'zarr'])
def test_a_folder_or_file_that_is_not_an_export_is_never_replaced(dm, tmp_path, fmt):
    folder = tmp_path / 'mine'
    folder.mkdir()
    (folder / 'notes.txt').write_text('precious')
    with pytest.raises(ValueError, match=r'mine exists and is not an export of phiml_data; .*overwrite=True'):
        export(dm, folder, fmt)
    assert (folder / 'notes.txt').read_text() == 'precious'
    (tmp_path / 'paper.nc').write_text('draft')
    with pytest.raises(ValueError, match='is not an export of phiml_data'):
        export(dm, tmp_path / 'paper.nc', fmt)
    assert (tmp_path / 'paper.nc').read_text() == 'draft'
    export(dm, folder, fmt, overwrite=True)  # asked for explicitly
    assert not (folder / 'notes.txt').exists()


@pytest.mark.parametrize('fmt', ['netcdf', 'zarr'])
def test_an_earlier_export_is_replaced_and_a_cache_never(dm, tmp_path, fmt):
    path = tmp_path / 'out'
    export(dm, path, fmt, sims=[0])
    export(dm, path, fmt, sims=[1, 2])
    opened = xr.open_dataset(path, engine='h5netcdf') if fmt == 'netcdf' else xr.open_zarr(path)
    assert list(opened['sim'].values) == [1, 2]
    for target in (dm.directory, dm.directory.parent, dm.directory / 'x.nc'):
        with pytest.raises(ValueError, match='Refusing to'):
            export(dm, target, fmt, overwrite=True)
    assert dm.cached_indices() == [0, 1, 2] and (dm.directory / 'config.json').exists()
    assert not list(tmp_path.glob('.*'))  # no temporary left


def _small_file_limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, 12_000))  # below the 3-sim export (30 KiB of values)


def _contents(path):
    if path.is_dir():
        return sorted((p.relative_to(path).as_posix(), p.read_bytes()) for p in path.rglob('*') if p.is_file())
    return path.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize('fmt', ['netcdf', 'zarr'])
def test_a_failing_write_is_an_error_and_keeps_the_previous_export(dm, tmp_path, fmt):
    """A netCDF export that hit a write error segfaulted inside HDF5 and left a partial file in place."""
    import subprocess
    import sys

    from conftest import ROOT

    path = tmp_path / 'out'
    export(dm, path, fmt, sims=[0])
    before = _contents(path)
    code = (
        "from phiml_data import DataManager, Burgers2D; from phiml_data.export import export\n"
        f"export(DataManager({str(dm.directory.parent)!r}, Burgers2D(resolution=16, steps=4)), {str(path)!r}, {fmt!r})"
    )
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, preexec_fn=_small_file_limit
    )
    assert result.returncode == 1 and 'nothing there was changed' in result.stderr, result.stderr[-2000:]
    assert 'File too large' in result.stderr
    assert _contents(path) == before and not list(tmp_path.glob('.*'))


@pytest.fixture(scope='module')
def smoke_dm(tmp_path_factory):
    from phiml_data import DataManager, SmokePlume

    manager = DataManager(tmp_path_factory.mktemp('smoke'), SmokePlume(resolution=8, steps=1))
    manager.generate(1, progress=False)
    return manager


@pytest.mark.parametrize('cache', ['dm', 'smoke_dm'])
def test_netcdf_export_passes_the_cf_1_8_compliance_checker(cache, request, tmp_path):
    """IOOS compliance-checker (from PyPI), CF 1.8: not a single message, for centred and staggered fields."""
    import json

    from compliance_checker.runner import CheckSuite, ComplianceChecker

    path = export(request.getfixturevalue(cache), tmp_path / 'out.nc')
    CheckSuite().load_all_available_checkers()
    passed, errors = ComplianceChecker.run_checker(
        str(path), ['cf:1.8'], 0, 'normal', output_filename=str(tmp_path / 'report.json'), output_format='json'
    )
    report = json.loads((tmp_path / 'report.json').read_text())['cf:1.8']
    messages = [
        m for level in ('high', 'medium', 'low') for item in report[f'{level}_priorities'] for m in item['msgs']
    ]
    assert passed and not errors and messages == [], messages


def test_staggered_components_sit_on_their_face_coordinates(smoke_dm, tmp_path):
    """Each exported value lies at the coordinates PhiFlow's StaggeredGrid puts it: interpolating there is exact."""
    from phiml_data.scenarios import to_field

    scenario = smoke_dm.scenario
    ds = xr.open_dataset(export(smoke_dm, tmp_path / 'smoke.nc'), engine='h5netcdf')
    sim = smoke_dm.load_phiml_cache(0)
    grid = to_field(sim['velocity'].time[1], sim.metadata, 'velocity')
    for d in scenario.spatial_dims:
        component = grid.vector[d]
        exported = ds[f'velocity_{d}'].sel(sim=0).isel(t=1)
        dims = [f'{e}_face' if e == d else e for e in scenario.spatial_dims]
        points = component.points.numpy([*component.resolution.names, 'vector'])
        at = {name: np.unique(points[..., i]) for i, name in enumerate(dims)}  # where PhiFlow holds the values
        on_ours = exported.sel(at, method='nearest', tolerance=1e-5)  # KeyError if not on our coordinates
        np.testing.assert_array_equal(
            on_ours.transpose(*dims).values, component.values.numpy(component.resolution.names)
        )
    assert 'velocity' not in ds and ds['density'].dims == ('sim', 't', 'x', 'y')


def test_an_export_into_a_read_only_folder_names_the_target(dm, tmp_path, monkeypatch):
    """Issue #28.12: the message named a hidden temporary file instead of the target (the temporary folder's
    creation fails first in a read-only folder; simulated, since the tests may run as root)."""
    import tempfile

    def refused(prefix, suffix, dir):
        raise PermissionError(13, 'Permission denied', f'{dir}/{prefix}abc{suffix}')

    monkeypatch.setattr(tempfile, 'mkdtemp', refused)
    target = tmp_path / 'locked' / 'out.nc'
    with pytest.raises(OSError, match=rf"Cannot write {target} \(nothing there was changed\): Permission denied$"):
        export(dm, target)


def cfchecker_errors(path) -> list[str]:
    """The errors of the CF conventions' own checker (`cfchecker`, offline: compliance-checker's standard name table
    and stand-ins for the area type and region tables, which our exports do not use)."""
    import compliance_checker
    from cfchecker.cfchecks import CFChecker

    from conftest import ROOT

    tables = ROOT / 'tests' / 'data' / 'cf'
    names = Path(compliance_checker.__file__).parent / 'data' / 'cf-standard-name-table.xml'
    checker = CFChecker(
        cfStandardNamesXML=str(names),
        cfAreaTypesXML=str(tables / 'area-type-table.xml'),
        cfRegionNamesXML=str(tables / 'standardized-region-list.xml'),
        silent=True,
    )
    results = checker.checker(str(path))
    found = [m for m in results['global']['FATAL'] + results['global']['ERROR']]
    for variable, messages in results['variables'].items():
        found += [f'{variable}: {m}' for m in messages['FATAL'] + messages['ERROR']]
    return found


@pytest.mark.parametrize('case', ['burgers1d', 'burgers2d', 'smoke'])
def test_netcdf_exports_pass_the_cf_conventions_own_checker(case, tmp_path):
    """Issue #31.6: cfchecker reported `ERROR (2.2): Invalid variable type ... string` for the component label."""
    pytest.importorskip('cfchecker')
    from phiml_data import Burgers1D, Burgers2D, DataManager, SmokePlume

    scenario = {
        'burgers1d': Burgers1D(resolution=16, steps=3),
        'burgers2d': Burgers2D(resolution=16, steps=3),
        'smoke': SmokePlume(resolution=(16, 16), steps=2),
    }[case]
    manager = DataManager(tmp_path / 'cache', scenario)
    manager.generate(2, progress=False)
    assert cfchecker_errors(export(manager, tmp_path / f'{case}.nc')) == []


def test_staggered_exports_hold_both_faces_so_the_last_cell_interpolates(smoke_dm, tmp_path):
    """Issue #31.6: without the upper face, interpolating in the last cell gave NaN."""
    ds = xr.open_dataset(export(smoke_dm, tmp_path / 'smoke.nc'), engine='h5netcdf')
    n, length = smoke_dm.scenario.resolution[0], smoke_dm.scenario.length
    assert ds.sizes['x_face'] == n + 1 and float(ds['x_face'][-1]) == pytest.approx(length)
    last_cell = length - 0.25 * length / n
    assert np.isfinite(ds['velocity_x'].interp(x_face=last_cell).values).all()
    assert (ds['velocity_x'].isel(x_face=-1).values == 0).all()  # the upper wall: no flow through it
