"""Notebooks: sources in sync, what an executed notebook holds, papermill with -f and bad -p.

The numbers themselves are checked by nbval on the executed references in tests/ref/
(cells tagged nbval-check-output; `pytest` collects them with --nbval-lax). The parameter
cases of issue 14 are tested without a kernel in test_notebook_setup.py; the two papermill
runs here check the same paths end to end.
"""
import json
import re
from pathlib import Path

import jupytext
import nbformat
import papermill as pm
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REFS = sorted((ROOT / "tests" / "ref").glob("*.ipynb"))
PLOTLY = "application/vnd.plotly.v1+json"


def _code(nb) -> list[str]:
    return [c.source.strip() for c in nb.cells
            if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


def _outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_ipynb_matches_its_py_source(path):
    src = path.with_suffix(".py")
    assert src.exists(), f"{path.name} has no paired .py source"
    assert _code(nbformat.read(path, 4)) == _code(jupytext.read(src)), \
        f"{path.name} and {src.name} differ: run `jupytext --sync {src}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_reference_matches_notebook(path):
    ref = ROOT / "tests" / "ref" / path.name
    assert ref.exists(), f"no nbval reference {ref}: run `make refs`"
    assert _code(nbformat.read(ref, 4)) == _code(nbformat.read(path, 4)), \
        f"{ref} is stale: run `make refs` to re-execute it"


@pytest.mark.parametrize("path", REFS, ids=lambda p: p.stem)
def test_executed_notebook_exports_every_figure_to_html(path):
    """An executed notebook (papermill, ci preset) is small, holds no widget state, and
    `jupyter nbconvert --to html` shows every figure (an HTML copy beside plotly's JSON), its
    tables as <table> elements and no widget placeholder text."""
    from nbconvert import HTMLExporter
    nb = nbformat.read(path, 4)
    assert path.stat().st_size < 1_500_000 and "widgets" not in nb.metadata
    figures = [o for o in _outputs(nb) if PLOTLY in o.get("data", {})]
    assert len(figures) >= 3
    assert all("text/html" in o.data and "plotly-graph-div" in o.data["text/html"] for o in figures)
    texts = [o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in _outputs(nb)]
    assert not [t for t in texts if t.startswith(("VBox(", "HBox(", "FigureWidget("))]
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert html.count('class="plotly-graph-div"') == len(figures)
    for o in figures:  # every figure's traces reach the page with their points
        fig = o.data[PLOTLY]
        assert sum(len(t.get("x") or t.get("y") or []) for t in fig["data"]) > 0
    assert len(re.findall(r"<table class=[\"']momawb-table", html)) >= 2
    assert "application/vnd.jupyter.widget-view+json" not in html


@pytest.mark.notebook
def test_f_file_sections_are_trained_with(tmp_path, outputs, capsys):
    """Issue 14 item 6 end to end, through `python -m momawb.execute` (what `make run` calls;
    papermill with a `-f` file's parameters): my.yaml = the ci preset with its own iql section.
    The run trains IQL with that section, writes only this grid's rows, and ends with the
    summary (issue 15 item 5)."""
    from momawb import execute
    my = yaml.safe_load((ROOT / "params" / "coordination_game" / "ci.yaml").read_text())
    my.update(iql={"hidden": [8], "steps": 7, "eval_every": 0}, methods=["iql"], datasets="neutral", seeds=1,
              eval_episodes=5, backend="serial")
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(my))
    out = tmp_path / "out.ipynb"
    assert execute.main(["coordination_game", str(out), "-f", str(tmp_path / "my.yaml"), "--quiet"]) == 0
    summary = capsys.readouterr().out
    assert f"executed notebook: {out}" in summary and "results.json" in summary
    assert re.search(r"\| neutral \| -?[\d.]+ ± 0.00 · IQM -?[\d.]+ · paper 1.00 ± 0.00( \*)? \|", summary)  # Table 3
    res = nbformat.read(out, 4)
    text = "".join(o.get("text", "") for o in _outputs(res))
    assert "papermill's sections change the preset: iql eval_every 100 -> 0, hidden 32,32 -> 8, steps 300 -> 7" in text
    assert "display: static figures, text progress bars" in text and "estimated wall time" in text
    rows = json.loads((outputs / "coordination_game" / "ci" / "results.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["method"] == "iql"
    c = rows[0]["config"]["config"]
    assert (c["steps"], c["hidden"], c["eval_every"], c["lr"]) == (7, [8], 0, 0.001)
    for name in ("table1", "table3"):
        assert (outputs / "coordination_game" / "ci" / "tables" / f"{name}.csv").exists()
    assert "widgets" not in res.metadata


@pytest.mark.notebook
def test_bad_parameter_stops_first_and_writes_nothing(tmp_path, outputs):
    """Issue 14 items 11 and 13: `-p seeds 0` stops in the set-up cell, naming the parameter,
    and leaves no outputs folder behind."""
    nb = ROOT / "notebooks" / "coordination_game.ipynb"
    with pytest.raises(pm.PapermillExecutionError, match=r"parameter 'seeds' = 0 is out of range; allowed: >= 1"):
        pm.execute_notebook(str(nb), str(tmp_path / "o.ipynb"), parameters={"seeds": 0},
                            kernel_name="python3", progress_bar=False, cwd=str(ROOT))
    assert not outputs.exists()


@pytest.mark.notebook
def test_a_failed_run_keeps_the_good_executed_notebook(tmp_path, outputs, capsys):
    """`make run` with a misspelt parameter stopped in the set-up cell, and the failed notebook
    replaced the good executed one at the same path; it now goes beside it."""
    from momawb import execute
    out = tmp_path / "coordination_game.ipynb"
    out.write_text("a good executed notebook")
    assert execute.main(["coordination_game", str(out), "-p", "preset", "bogus", "--quiet"]) == 1
    assert out.read_text() == "a good executed notebook"
    failed = tmp_path / "coordination_game.failed.ipynb"
    assert "no preset file" in "".join(o.get("text", "") + str(o.get("evalue", "")) for o in _outputs(
        nbformat.read(failed, 4)))
    err = capsys.readouterr().err
    assert f"the partly executed notebook is {failed}; {out} is unchanged" in err
    assert not (tmp_path / "coordination_game.running.ipynb").exists() and not outputs.exists()
