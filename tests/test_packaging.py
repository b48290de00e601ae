"""Repository hygiene: installs agree, data layer is torch-free, no pickle, no tensor conversions."""

import re

import tomllib
import yaml

from conftest import ROOT, run_python


def test_environment_yml_pip_section_matches_pyproject_extras():
    extras = set(tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['optional-dependencies'])
    env = yaml.safe_load((ROOT / 'environment.yml').read_text())
    pip = next(d['pip'] for d in env['dependencies'] if isinstance(d, dict) and 'pip' in d)
    editable = [p for p in pip if p.startswith('-e .')]
    assert len(editable) == 1
    env_extras = set(re.fullmatch(r'-e \.\[(.*)\]', editable[0]).group(1).split(','))
    setup = re.search(r'^EXTRAS="(.*)"$', (ROOT / 'scripts' / 'setup.sh').read_text(), re.M).group(1)
    assert env_extras == extras == set(setup.split(','))


def test_constraints_pin_every_dependency_and_this_environment_has_those_versions():
    """constraints.txt is the lock the README's numbers come from: it pins every direct dependency, the set-up
    installs with it, and the environment running the tests holds exactly those versions."""
    from importlib.metadata import version

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    direct = [Requirement(r).name for r in project['dependencies']]
    direct += [Requirement(r).name for extra in project['optional-dependencies'].values() for r in extra]
    lines = (ROOT / 'constraints.txt').read_text().splitlines()
    pins = dict(line.split('==') for line in lines if line and not line.startswith('#'))
    canon = lambda n: re.sub(r'[-_.]+', '-', n).lower()
    pins = {canon(k): v for k, v in pins.items()}
    assert not [n for n in direct if canon(n) not in pins], 'direct dependencies missing from constraints.txt'
    wrong = {n: (version(n), pins[canon(n)]) for n in direct if version(n).split('+')[0] != pins[canon(n)]}
    assert not wrong, f"installed vs constraints.txt: {wrong}; rerun scripts/setup.sh"
    assert '-c "$ROOT/constraints.txt"' in (ROOT / 'scripts' / 'setup.sh').read_text()


def test_pins():
    deps = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['dependencies']
    assert 'phiml==1.16.1' in deps and 'phiflow==3.4.0' in deps
    assert not any(d.startswith('torch') for d in deps)


def test_data_layer_imports_and_works_without_torch():
    code = """
import sys, tempfile
sys.modules['torch'] = None  # any `import torch` now raises ImportError
import phiml_data
from phiml_data import DataManager, Burgers2D, PhiMLDataset, split_sims
from phiml_data import scenarios, keys, manifest, generation, formats, manager, importers, export, dataset, sampler, memory
from phiml_data import augmentation, normalization, evaluation, config, plots, pipeline, legacy, cli, distributed
dm = DataManager(tempfile.mkdtemp(), Burgers2D(resolution=8, steps=3))
dm.generate(2, progress=False)
b = next(PhiMLDataset(dm, n_targets=2, augment=True).iterate_batches(4))
print(b['targets'].shape.names, 'torch' in sys.modules and sys.modules['torch'] is not None)
"""
    assert run_python(code).strip() == "('batch', 'time', 'x', 'y', 'channels') False"


def test_ruff_is_clean_including_the_banned_apis():
    """pyflakes, pycodestyle, import order, formatting, and the banned APIs of pyproject.toml: module-level torch
    imports, process-wide state (`math.use`, `math.seed`, `np.random.seed`, `os.chdir`), unpickling loaders."""
    import subprocess
    import sys

    paths = ['phiml_data', 'tests', 'benchmarks', 'references']
    for cmd in (['check', '--no-cache', '.'], ['format', '--check', '--no-cache', *paths]):  # check: the whole repo
        result = subprocess.run([sys.executable, '-m', 'ruff', *cmd], capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0, result.stdout + result.stderr


def test_a_storage_format_is_one_module():
    """zarr was added as `phiml_data/formats/zarr.py` alone: no other module of the package names it."""
    from phiml_data.formats import FORMATS

    assert {'h5', 'npz', 'zarr'} <= set(FORMATS)
    exchange = {'phiml_data/export.py', 'phiml_data/cli.py'}  # zarr as an export format for xarray, not as storage
    naming = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / 'phiml_data').rglob('*.py') if 'zarr' in p.read_text().lower()
    )
    assert sorted(set(naming) - exchange) == ['phiml_data/formats/zarr.py']


def test_shipped_configs_parse_and_hold_out_enough_test_sims():
    from phiml_data import load_run_config, split_sims

    for path in sorted((ROOT / 'configs').glob('*.yaml')):
        cfg = load_run_config(path)
        test = split_sims(range(cfg.data.n_sims), cfg.data.split, cfg.data.split_seed)['test']
        assert len(test) >= cfg.evaluation.min_test_sims >= 4, path.name
        h = cfg.hybrid  # a hybrid config's network gets the epochs of `training.mode=synthetic` on the same file
        if cfg.training.mode == 'hybrid':
            assert h.warmup_epochs + h.cycles * h.network_epochs == cfg.training.epochs, path.name
