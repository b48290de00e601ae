"""The notebooks where users open them: JupyterLab in headless Chromium runs every notebook through its UI and the
outputs it shows are compared with the stored ones, as nbval compares them (issues #21.5, #31.3).

Needs Debian's `chromium` and `chromium-driver` (scripts/setup.sh installs them) and the `notebooks` extra
(JupyterLab, selenium). Skipped where the browser is missing, unless `PHIML_DATA_REQUIRE_BROWSER=1` (set by
scripts/test.sh, so CI fails instead of skipping). `bash scripts/lab.sh` is checked here too: it serves the repository
root and writes nothing outside the repository and the environment.
"""

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT

NOTEBOOKS = sorted(p.name for p in (ROOT / 'notebooks').glob('*.ipynb'))


def _browser():
    chromium, driver = shutil.which('chromium'), shutil.which('chromedriver')
    if not (chromium and driver):
        if os.environ.get('PHIML_DATA_REQUIRE_BROWSER') == '1':
            pytest.fail("chromium / chromedriver not found; scripts/setup.sh installs them (apt-get)")
        pytest.skip("chromium / chromedriver not installed (Debian: apt-get install chromium chromium-driver)")
    pytest.importorskip('selenium')
    pytest.importorskip('jupyterlab')
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _start_lab(root, tmp_path):
    """JupyterLab on a loopback port, serving `root`, with the app exposed to scripts and cells not virtualised."""
    port, token = _free_port(), secrets.token_hex(16)
    settings = tmp_path / 'settings' / '@jupyterlab' / 'notebook-extension'
    settings.mkdir(parents=True)
    (settings / 'tracker.jupyterlab-settings').write_text(json.dumps({'windowingMode': 'none'}))
    env = {
        **os.environ,
        'JUPYTERLAB_SETTINGS_DIR': str(tmp_path / 'settings'),
        'JUPYTERLAB_WORKSPACES_DIR': str(tmp_path / 'workspaces'),
        'JUPYTER_RUNTIME_DIR': str(tmp_path / 'runtime'),
        'JUPYTER_CONFIG_DIR': str(tmp_path / 'config'),
    }
    server = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'jupyterlab',
            '--no-browser',
            '--ServerApp.ip=127.0.0.1',
            f'--ServerApp.port={port}',
            f'--IdentityProvider.token={token}',
            f'--ServerApp.root_dir={root}',
            '--LabApp.expose_app_in_browser=True',
            '--LabApp.news_url=None',
            '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
            *(['--allow-root'] if os.geteuid() == 0 else []),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / 'lab.log', 'w'),
        cwd=root,
    )
    url = f'http://127.0.0.1:{port}'
    for _ in range(120):
        try:
            urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=1)
            return server, url, token
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.5)
    server.kill()
    raise AssertionError(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")


def _chrome(chromium, driver, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-quic',
        f'--user-data-dir={tmp_path / "profile"}',
        '--window-size=1400,1000',
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def _wait(browser, script: str, timeout: float, what: str):
    from selenium.common.exceptions import JavascriptException

    deadline, error = time.time() + timeout, None
    while time.time() < deadline:
        try:  # while the page loads, a script may run in a context that is being replaced
            value = browser.execute_script(script)
        except JavascriptException as e:
            value, error = None, e.msg
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what}" + (f" (last script error: {error})" if error else '')
    )


PANEL = (  # `window.jupyterapp` appears only once the app has started: before that the page is still loading
    'const app = window.jupyterapp;'
    'const p = app && app.shell ? Array.from(app.shell.widgets("main"))'
    '.find(w => w.sessionContext && w.content && w.content.model) : undefined;'
)
KERNEL_IDLE = PANEL + 'return !!(p && p.sessionContext.kernelDisplayStatus === "idle");'
DONE = (  # every cell ran, or "run all" stopped at a cell that raised (the cells after it never run)
    PANEL
    + '''if (!p) return null;
const cells = p.content.model.toJSON().cells.filter(c => c.cell_type === "code");
const raised = cells.some(c => c.outputs.some(o => o.output_type === "error"));
return p.sessionContext.kernelDisplayStatus === "idle" && (raised || cells.every(c => c.execution_count !== null)) ? cells : null;'''
)
IMAGES = (
    'return Array.from(document.querySelectorAll(".jp-RenderedImage img")).map(i => i.complete ? i.naturalWidth : 0);'
)


def _run_in_lab(notebook: dict, tmp_path) -> tuple[list, list]:
    """Opens `notebook` (without its outputs) in JupyterLab in Chromium, runs all cells with the UI's command.

    Returns:
        The code cells as the UI's model holds them after the run, and the pixel widths of the rendered figures.
    """
    chromium, driver = _browser()
    root = tmp_path / 'lab'
    root.mkdir()
    notebook = json.loads(json.dumps(notebook))
    for cell in notebook['cells']:  # the UI starts from a notebook without outputs, in a copy it may save
        if cell['cell_type'] == 'code':
            cell.update(outputs=[], execution_count=None)
    (root / 'notebook.ipynb').write_text(json.dumps(notebook))
    server, url, token = _start_lab(root, tmp_path)
    browser = None
    try:
        browser = _chrome(chromium, driver, tmp_path)
        browser.get(f'{url}/lab/tree/notebook.ipynb?token={token}')
        _wait(browser, KERNEL_IDLE, 120, 'the notebook to open with an idle kernel')
        browser.execute_script('window.jupyterapp.commands.execute("notebook:run-all-cells");')
        cells = _wait(browser, DONE, 300, 'every cell to run')
        return cells, browser.execute_script(IMAGES)
    except BaseException:
        if browser is not None:
            browser.save_screenshot(str(tmp_path / 'failure.png'))
        raise
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        server.wait(timeout=30)


def _errors(cells) -> list[str]:
    """`'cell N: Name: message'` of every cell that raised, N counting code cells from 1."""
    return [
        f"cell {i}: {o['ename']}: {o['evalue']}"
        for i, c in enumerate(cells, 1)
        for o in c['outputs']
        if o['output_type'] == 'error'
    ]


def _sanitizers() -> list[tuple]:
    """The `(regex, replacement)` pairs of tests/nbval_sanitize.cfg, the rules nbval applies."""
    text = (ROOT / 'tests' / 'nbval_sanitize.cfg').read_text()
    pairs = re.findall(r'^regex: (.*)\nreplace: (.*)$', text, re.M)
    return [(re.compile(r), rep) for r, rep in pairs]


def _texts(cell) -> list[str]:
    """The text outputs of a cell as nbval compares them: each stream's whole text and `text/plain`, sanitised."""
    merged = {}  # streams arrive in chunks (stored and in the UI, split differently): join each stream's chunks first
    for o in cell['outputs']:
        if o['output_type'] == 'stream':
            text = o['text']
        elif 'text/plain' in o.get('data', {}):
            text = o['data']['text/plain']
        else:
            continue
        kind = o.get('name', o['output_type'])
        merged[kind] = merged.get(kind, '') + (''.join(text) if isinstance(text, list) else text)
    for regex, replacement in _sanitizers():
        merged = {kind: regex.sub(replacement, text) for kind, text in merged.items()}
    return sorted((kind, text.rstrip()) for kind, text in merged.items())


def differences(stored: list, ran: list) -> list[str]:
    """Checked cells (not tagged `nbval-ignore-output`) whose text output in the UI differs from the stored one."""
    found = []
    for i, (before, after) in enumerate(zip(stored, ran, strict=True), 1):
        if 'nbval-ignore-output' in before.get('metadata', {}).get('tags', []) or before.get('execution_count') is None:
            continue
        if _texts(before) != _texts(after):
            found.append(f"cell {i}: stored {_texts(before)!r}, the UI showed {_texts(after)!r}")
    return found


_RUNS = {}  # notebook name -> (cells, figure widths): each notebook runs once per session


def _ran(name, tmp_path_factory):
    if name not in _RUNS:
        notebook = json.loads((ROOT / 'notebooks' / name).read_text())
        _RUNS[name] = _run_in_lab(notebook, tmp_path_factory.mktemp('lab'))
    return _RUNS[name]


@pytest.mark.slow
@pytest.mark.parametrize('name', NOTEBOOKS)
def test_every_notebook_runs_in_jupyterlab_and_shows_its_stored_outputs(name, tmp_path_factory):
    stored = [c for c in json.loads((ROOT / 'notebooks' / name).read_text())['cells'] if c['cell_type'] == 'code']
    cells, widths = _ran(name, tmp_path_factory)
    assert not _errors(cells), f"kernel error in the UI: {_errors(cells)[0]}"
    assert not differences(stored, cells), differences(stored, cells)[0]
    figures = sum('image/png' in o.get('data', {}) for c in stored for o in c['outputs'])
    assert len(widths) == figures and all(w > 100 for w in widths), widths


@pytest.mark.slow
def test_a_changed_stored_output_is_caught(tmp_path_factory):
    """The comparison itself: `timeᵇ=13` edited to `timeᵇ=99` in a stored output of 02 is a difference."""
    name = '02_named_dimensions.ipynb'
    stored = [c for c in json.loads((ROOT / 'notebooks' / name).read_text())['cells'] if c['cell_type'] == 'code']
    edited = json.loads(json.dumps(stored, ensure_ascii=False).replace('timeᵇ=13', 'timeᵇ=99'))
    assert edited != stored
    cells, _ = _ran(name, tmp_path_factory)
    assert len(differences(edited, cells)) >= 1 and 'timeᵇ=99' in differences(edited, cells)[0]


@pytest.mark.slow
def test_a_cell_that_raises_in_the_middle_is_named_within_seconds(tmp_path):
    code = lambda source: {
        'cell_type': 'code',
        'source': source,
        'metadata': {},
        'outputs': [],
        'execution_count': None,
    }
    notebook = {
        'cells': [code('x = 1'), code("raise RuntimeError('broken on purpose')"), code('import time; time.sleep(600)')],
        'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}},
        'nbformat': 4,
        'nbformat_minor': 5,
    }
    t0 = time.time()
    cells, _ = _run_in_lab(notebook, tmp_path)
    assert _errors(cells) == ['cell 2: RuntimeError: broken on purpose'] and time.time() - t0 < 150


@pytest.mark.slow
def test_lab_sh_serves_the_repository_root_and_writes_nothing_outside_it(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    home = tmp_path / 'home'
    home.mkdir()
    env = {
        **os.environ,
        'HOME': str(home),
        'XDG_CONFIG_HOME': str(home / '.config'),
        'XDG_DATA_HOME': str(home / '.local'),
    }
    for name in ('JUPYTER_CONFIG_DIR', 'JUPYTER_DATA_DIR', 'JUPYTER_RUNTIME_DIR', 'IPYTHONDIR'):
        env.pop(name, None)
    args = ['--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}', f'--IdentityProvider.token={token}']
    server = subprocess.Popen(
        ['bash', str(ROOT / 'scripts' / 'lab.sh'), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        url = f'http://127.0.0.1:{port}/api/contents/notebooks?token={token}'
        for _ in range(240):
            try:
                listing = json.loads(urllib.request.urlopen(url, timeout=1).read())
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                time.sleep(0.5)
        else:
            raise AssertionError('lab.sh did not serve /api/contents/notebooks')
        assert {'01_caching.ipynb', '07_hybrid.ipynb'} <= {c['name'] for c in listing['content']}
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert [p for p in home.rglob('*')] == [], 'lab.sh wrote into HOME'
