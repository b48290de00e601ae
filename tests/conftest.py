"""Shared fixtures: small caches built once per test session (CI-sized); one compute thread per test process.

`pytest -n 2` runs two worker processes on CI's two cores: each gets one BLAS / OpenMP / torch thread, so the suite
never oversubscribes the machine (an oversubscribed torch ran 10x slower here). Child processes inherit the variables.
"""

import os

for _var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
    os.environ.setdefault(_var, '1')

import sys
from pathlib import Path

import pytest

from phiml_data import Burgers2D, DataManager

ROOT = Path(__file__).resolve().parents[1]
SMALL = Burgers2D(resolution=16, steps=6)  # the scenario of `small_cache`


@pytest.fixture(scope='session')
def burgers_dm(tmp_path_factory) -> DataManager:
    """8 sims of 2D Burgers at 16x16, 12 steps."""
    dm = DataManager(tmp_path_factory.mktemp('cache'), Burgers2D(resolution=16, steps=12))
    dm.generate(8, progress=False)
    return dm


@pytest.fixture
def small_cache(tmp_path) -> DataManager:
    """3 sims of 2D Burgers at 16x16, 6 steps, in a fresh folder (tests may break its files)."""
    dm = DataManager(tmp_path / 'cache', SMALL)
    dm.generate(3, progress=False)
    return dm


@pytest.fixture
def dm(small_cache) -> DataManager:
    """`small_cache` under the name the cache and CLI tests use."""
    return small_cache


@pytest.fixture
def cache(small_cache) -> DataManager:
    """`small_cache` under the name the integrity tests use."""
    return small_cache


def arrays(t):
    """NumPy array of a tensor in its own dim order."""
    return t.numpy(t.shape.names)


def run_python(code: str, *args, env=None, timeout=300):
    """Runs `code` in a fresh interpreter (same venv); returns stdout, raising with stderr on failure."""
    import subprocess

    result = subprocess.run(
        [sys.executable, '-c', code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise AssertionError(f"child failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout
