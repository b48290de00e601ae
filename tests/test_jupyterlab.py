"""The notebooks where users open them: JupyterLab in headless Chromium runs a notebook through its UI (issue #21.5).

Needs Debian's `chromium` and `chromium-driver` (scripts/setup.sh installs them) and the `notebooks` extra
(JupyterLab, selenium). Skipped where the browser is missing, unless `PHIML_DATA_REQUIRE_BROWSER=1` (set by
scripts/test.sh, so CI fails instead of skipping).
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT

NOTEBOOKS = ['02_named_dimensions.ipynb']  # two figures, a staggered grid; the fastest with plots


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
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = browser.execute_script(script)
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


PANEL = 'const p = Array.from(window.jupyterapp.shell.widgets("main")).find(w => w.sessionContext && w.content && w.content.model);'
KERNEL_IDLE = PANEL + 'return !!(p && p.sessionContext.kernelDisplayStatus === "idle");'
DONE = (
    PANEL
    + '''const cells = p.content.model.toJSON().cells.filter(c => c.cell_type === "code");
return p.sessionContext.kernelDisplayStatus === "idle" && cells.every(c => c.execution_count !== null) ? cells : null;'''
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
    return [f"{o['ename']}: {o['evalue']}" for c in cells for o in c['outputs'] if o['output_type'] == 'error']


@pytest.mark.slow
@pytest.mark.parametrize('name', NOTEBOOKS)
def test_a_notebook_runs_in_jupyterlab_in_a_real_browser(name, tmp_path):
    notebook = json.loads((ROOT / 'notebooks' / name).read_text())
    stored = [c for c in notebook['cells'] if c['cell_type'] == 'code']
    cells, widths = _run_in_lab(notebook, tmp_path)
    assert not _errors(cells), f"kernel error in the UI: {_errors(cells)[0]}"
    kinds = lambda c: sorted(o['output_type'] for o in c['outputs'] if o['output_type'] != 'stream')
    for before, after in zip(stored, cells, strict=True):  # every output the stored notebook shows, the UI made too
        assert kinds(after) == kinds(before) and bool(after['outputs']) == bool(before['outputs']), after['source']
    figures = sum('image/png' in o.get('data', {}) for c in stored for o in c['outputs'])
    assert len(widths) == figures and all(w > 100 for w in widths), widths


@pytest.mark.slow
def test_a_failing_cell_is_seen_as_a_kernel_error(tmp_path):
    code = lambda source: {
        'cell_type': 'code',
        'source': source,
        'metadata': {},
        'outputs': [],
        'execution_count': None,
    }
    notebook = {
        'cells': [code('x = 1'), code("raise RuntimeError('broken on purpose')")],
        'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}},
        'nbformat': 4,
        'nbformat_minor': 5,
    }
    cells, _ = _run_in_lab(notebook, tmp_path)
    assert _errors(cells) == ['RuntimeError: broken on purpose']
