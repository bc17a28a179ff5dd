"""JupyterLab in headless Chromium: run the Coordination Game notebook (ci preset) the way a
researcher would, check that widgets and plots render and no cell errors, and save a
screenshot under outputs/. Select with `-m browser`; needs Debian's /usr/bin/chromium."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (README, test set-up)")
    home = tmp_path / "jhome"
    settings = home / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    work = tmp_path / "lab"
    (work / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / "coordination_game.ipynb", work / "notebooks")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
           "MOMAWB_OUTPUTS": str(tmp_path / "outputs")}
    port, token = _free_port(), "momawb-browser-test"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start: " + (tmp_path / "lab.log").read_text()[-2000:])
    yield url, token
    proc.terminate()
    proc.wait(timeout=30)


def test_notebook_runs_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright
    url, token = lab
    shots = ROOT / "outputs" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1400})
        page.goto(f"{url}/lab/tree/notebooks/coordination_game.ipynb?token={token}&reset")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        page.wait_for_function("() => document.querySelector('.jp-Notebook-ExecutionIndicator') !== null"
                               " || document.querySelectorAll('.jp-Cell').length > 5", timeout=60_000)
        time.sleep(2)  # kernel start
        page.click("text=Run", timeout=30_000)
        page.click("li.lm-Menu-item[data-command='runmenu:run-all']", timeout=30_000)
        n_code = page.locator(".jp-CodeCell").count()
        # every code cell shows an execution count once run-all finished
        page.wait_for_function(
            """(n) => {const ps = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                       return ps.length === n && ps.every(p => /\\[\\d+\\]/.test(p.textContent));}""",
            arg=n_code, timeout=900_000, polling=1000)
        time.sleep(2)
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        tracebacks = [t for t in errors.all_text_contents() if "Traceback" in t or "Error" in t.split("\n")[0]]
        found = page.evaluate("""() => ({
            plotly: document.querySelectorAll('.js-plotly-plot').length,
            sliders: document.querySelectorAll('.widget-slider, .jupyter-widgets.widget-hslider').length,
            widget_errors: [...document.querySelectorAll('.jupyter-widgets-view .jp-RenderedText')]
                .map(e => e.textContent).filter(t => t.includes('Error')),
            tables: [...document.querySelectorAll('.jp-OutputArea-output pre')].map(e => e.textContent)
                .filter(t => t.includes('| favorable')).length })""")
        page.screenshot(path=str(shots / "coordination_game_lab.png"), full_page=True)
        browser.close()
    assert not tracebacks, tracebacks
    assert found["sliders"] >= 2, found            # the dataset explorer's probability sliders
    assert found["plotly"] >= 4, found             # histogram, live curves, mean curves, conventions
    assert not found["widget_errors"], found
    assert found["tables"] >= 2, found             # Table 1 and Table 3
