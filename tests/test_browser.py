"""JupyterLab and exported HTML in headless Chromium, as a researcher sees them.

* the executed notebooks (tests/ref/*.ipynb: papermill at the ci preset, what `make refs` and
  `make run` produce) opened in JupyterLab without a kernel: every figure has traces with
  points, the results tables are <table> elements, no widget shows as text;
* the same notebook exported by `jupyter nbconvert --to html`: every figure draws (plotly.js
  comes from its CDN in the page; here the CDN address is answered with plotly's own copy);
* the Coordination Game notebook run in JupyterLab (Run All): live widgets, sliders, figures,
  tables, no error.

Screenshots go to outputs/screenshots/. Select with `-m browser`; needs Debian's /usr/bin/chromium.
"""
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
SHOTS = ROOT / "outputs" / "screenshots"
pytestmark = pytest.mark.browser
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic"]
#: per executed notebook: (figures with points, results/data tables) at least
EXPECTED = {"coordination_game": (3, 2), "reacher": (3, 3)}

# every drawn plotly graph: its points (plotly.js's decoded traces); every momawb table
PAGE_FACTS = """() => ({
    plots: [...new Set(document.querySelectorAll('.js-plotly-plot, .plotly-graph-div'))].filter(g => g._fullData)
        .map(g => g._fullData.reduce((n, t) => n + (t._length || 0), 0)),
    tables: document.querySelectorAll('table.momawb-table').length,
    widget_text: [...document.querySelectorAll('.jp-OutputArea-output pre, pre')].map(e => e.textContent)
        .filter(t => /^(VBox|HBox|FigureWidget)\\(/.test(t.trim())).length,
    errors: [...document.querySelectorAll("[data-mime-type='application/vnd.jupyter.stderr']")]
        .map(e => e.textContent).filter(t => t.includes('Traceback')) })"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (README, test set-up)")
    from playwright.sync_api import sync_playwright
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    home = tmp / "jhome"
    user = home / "config" / "lab" / "user-settings" / "@jupyterlab"
    (user / "apputils-extension").mkdir(parents=True)
    (user / "apputils-extension" / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    (user / "notebook-extension").mkdir(parents=True)  # render every cell, not only those in view
    (user / "notebook-extension" / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    work = tmp / "work"
    (work / "notebooks").mkdir(parents=True)
    (work / "executed").mkdir()
    shutil.copy(ROOT / "notebooks" / "coordination_game.ipynb", work / "notebooks")
    for ref in (ROOT / "tests" / "ref").glob("*.ipynb"):
        shutil.copy(ref, work / "executed")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
           "MOMAWB_OUTPUTS": str(tmp / "outputs")}
    port, token = _free_port(), "momawb-browser-test"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "lab.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start: " + (tmp / "lab.log").read_text()[-2000:])
    yield url, token
    proc.terminate()
    proc.wait(timeout=30)


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_executed_notebook_shows_figures_and_tables_in_lab(lab, browser, name):
    """Opened as a researcher opens `make run`'s output: no kernel runs, nothing to trust."""
    url, token = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _open(page, f"{url}/lab/tree/executed/{name}.ipynb?token={token}&reset")
    n_plots, n_tables = EXPECTED[name]
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {n_plots}",
                           timeout=60_000)
    time.sleep(1)
    facts = page.evaluate(PAGE_FACTS)
    _screenshots(page, name)
    page.close()
    assert len(facts["plots"]) >= n_plots and all(n > 0 for n in facts["plots"]), facts
    assert facts["tables"] >= n_tables, facts
    assert facts["widget_text"] == 0 and not facts["errors"], facts


def _screenshots(page, name: str) -> None:
    """The notebook panel as opened, then the results table and the learning curves on their own."""
    page.screenshot(path=str(SHOTS / f"{name}_executed.png"))
    for what, inner in (("table", page.locator("table.momawb-table", has_text="IQM")),
                        ("curves", page.locator(".js-plotly-plot", has=page.locator(".gtitle", has_text="learning curves")))):
        area = page.locator(".jp-Cell-outputArea", has=inner).last
        if area.count():
            area.scroll_into_view_if_needed()
            area.screenshot(path=str(SHOTS / f"{name}_{what}.png"))


def test_html_export_draws_every_figure(browser, tmp_path):
    """`jupyter nbconvert --to html` of the executed game notebook, opened in Chromium."""
    import nbformat
    from nbconvert import HTMLExporter
    from plotly.offline import get_plotlyjs
    nb = nbformat.read(ROOT / "tests" / "ref" / "coordination_game.ipynb", 4)
    n_figures = sum("application/vnd.plotly.v1+json" in o.get("data", {})
                    for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    html, _ = HTMLExporter().from_notebook_node(nb)
    page_file = tmp_path / "coordination_game.html"
    page_file.write_text(html)
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.route("https://cdn.plot.ly/**", lambda route: route.fulfill(body=get_plotlyjs(),
                                                                      content_type="application/javascript"))
    page.route(lambda u: not u.startswith(("file:", "https://cdn.plot.ly")), lambda route: route.abort())
    page.goto(page_file.as_uri())
    page.wait_for_function(f"() => [...document.querySelectorAll('.plotly-graph-div')].filter(g => g.data)"
                           f".length >= {n_figures}", timeout=60_000)
    facts = page.evaluate(PAGE_FACTS)
    page.close()
    assert len(facts["plots"]) == n_figures and all(n > 0 for n in facts["plots"]), facts
    assert facts["tables"] >= 2 and facts["widget_text"] == 0, facts


def test_notebook_runs_in_jupyterlab(lab, browser):
    """Run All in JupyterLab (ci preset): live widgets, figures and tables, no error."""
    url, token = lab
    page = browser.new_page(viewport={"width": 1300, "height": 1400})
    _open(page, f"{url}/lab/tree/notebooks/coordination_game.ipynb?token={token}&reset")
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
    facts = page.evaluate(PAGE_FACTS)
    sliders = page.evaluate("() => document.querySelectorAll('.widget-slider, .jupyter-widgets.widget-hslider').length")
    page.screenshot(path=str(SHOTS / "coordination_game_lab.png"), full_page=True)
    page.close()
    assert not facts["errors"], facts["errors"]
    assert sliders >= 2, sliders                       # the dataset explorer's probability sliders (live)
    assert len(facts["plots"]) >= 3, facts             # explorer (live), learning curves, conventions
    assert facts["tables"] >= 2, facts                 # Table 1 and Table 3
