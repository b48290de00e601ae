"""Every reference script runs and its checks hold."""

import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

SCRIPTS = sorted((ROOT / 'references').glob('*.py'))


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda p: p.name)
def test_reference_runs(script):
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]  # each script ends by printing its verdict, after its asserts
    assert last in (f'{script.stem}: all checks passed', f'{script.stem}: results match simulate()'), last


def test_references_readme_lists_every_script():
    readme = (ROOT / 'references' / 'README.md').read_text()
    assert SCRIPTS and all(f'`{p.name}`' in readme for p in SCRIPTS)
