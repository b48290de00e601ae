"""Every command line the README prints runs as printed, in a fresh shell that entered the environment the way the
README says (issue #31.1): `phiml-data` lines with their arguments parsed and their config read and checked
(`PHIML_DATA_CHECK_ONLY=1`: nothing is simulated or trained), benchmark scripts through `--help`, and the scripts and
files the other lines name must exist; the inline command lines of its prose too."""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

VENV = Path(os.environ.get('PHIML_DATA_VENV') or ROOT / '.venv')


PLACEHOLDERS = re.compile(r'NAME|MODE|CONFIG|DIR|FILE|LAYOUT|<')  # words a reader replaces: such lines are not run


def readme_commands() -> list[str]:
    """The command lines the README prints: those of its `bash` blocks (comments after two spaces and `#` dropped,
    continuation lines joined) and the inline ones in its prose (`python ...`, `phiml-data ...`, `bash ...`, a line
    break inside joined), except lines with a placeholder to fill in."""
    text = (ROOT / 'README.md').read_text()
    lines = []
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
        joined = block.replace('\\\n', ' ')
        for line in joined.splitlines():
            line = re.sub(r'\s{2,}#.*$', '', line).strip()
            if line and not line.startswith('#'):
                lines.append(line)
    prose = re.sub(r'```.*?```', '', text, flags=re.S)
    lines += [' '.join(span.split()) for span in re.findall(r'`((?:python|phiml-data|bash)\s[^`]+)`', prose)]
    return list(dict.fromkeys(line for line in lines if not PLACEHOLDERS.search(line)))


def _fresh_shell(command: str, **env) -> subprocess.CompletedProcess:
    """`command` in `bash` with a clean environment, after `source .venv/bin/activate` as the README says."""
    base = {'HOME': os.environ.get('HOME', '/root'), 'PATH': '/usr/local/bin:/usr/bin:/bin', 'LANG': 'C.UTF-8'}
    script = f'source {shlex.quote(str(VENV / "bin" / "activate"))} && {command}'
    return subprocess.run(
        ['bash', '-c', script], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=300
    )


def test_the_readme_tells_how_to_enter_the_environment():
    text = (ROOT / 'README.md').read_text()
    assert 'source .venv/bin/activate' in text and 'phiml-data' in text
    assert not [c for c in readme_commands() if c.startswith('python -m phiml_data')], 'use the phiml-data script'


@pytest.mark.slow
@pytest.mark.parametrize('command', [c for c in readme_commands() if c.startswith('phiml-data')])
def test_every_phiml_data_line_of_the_readme_runs_as_printed(command):
    result = _fresh_shell(command, PHIML_DATA_CHECK_ONLY='1')
    expected = 'usage: phiml-data' if '--help' in command.split() else 'ok: '
    assert result.returncode == 0 and result.stdout.startswith(expected), result.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize('command', [c for c in readme_commands() if c.startswith('python benchmarks/')])
def test_every_benchmark_line_of_the_readme_runs_as_printed(command):
    """Its arguments parsed and its config and overrides checked (`PHIML_DATA_CHECK_ONLY=1`: nothing is measured)."""
    result = _fresh_shell(command, PHIML_DATA_CHECK_ONLY='1')
    assert result.returncode == 0 and result.stdout.startswith('ok: '), result.stderr[-2000:]


@pytest.mark.parametrize(
    'command', [c for c in readme_commands() if not c.startswith(('phiml-data', 'python benchmarks/', 'source '))]
)
def test_every_other_line_of_the_readme_names_files_that_exist(command):
    named = [w for w in shlex.split(command) if re.match(r'^(scripts|configs|benchmarks|tests|notebooks|\.ci)/', w)]
    assert named and all((ROOT / w).exists() for w in named), command
