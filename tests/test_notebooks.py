"""Notebooks: sources in sync, papermill with -p and -f, references in sync.

The numbers themselves are checked by nbval on the executed references in tests/ref/
(cells tagged nbval-check-output; `pytest` collects them with --nbval-lax).
"""
from pathlib import Path

import jupytext
import nbformat
import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _code(nb) -> list[str]:
    return [c.source.strip() for c in nb.cells
            if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


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


@pytest.mark.notebook
def test_papermill_with_parameters_and_preset_file(tmp_path, outputs):
    nb = ROOT / "notebooks" / "coordination_game.ipynb"
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(nb), str(out), parameters={"methods": [], "datasets": ["neutral"]},
                        kernel_name="python3", progress_bar=False, cwd=str(ROOT))
    res = nbformat.read(out, 4)
    text = "".join(o.get("text", "") for c in res.cells if c.cell_type == "code" for o in c.outputs)
    assert "| neutral | 0.50 | 0.50 |" in text and "favorable" not in text.split("Table")[0].split("score (paper)")[-1]
    out2 = tmp_path / "out2.ipynb"
    import yaml
    params = yaml.safe_load((ROOT / "params" / "coordination_game" / "ci.yaml").read_text())
    pm.execute_notebook(str(nb), str(out2), parameters={**params, "methods": []}, kernel_name="python3",
                        progress_bar=False, cwd=str(ROOT))
    assert nbformat.read(out2, 4).metadata.papermill.parameters["preset"] == "ci"


@pytest.mark.notebook
def test_bad_preset_fails_with_clear_error(tmp_path, outputs):
    nb = ROOT / "notebooks" / "coordination_game.ipynb"
    with pytest.raises(pm.PapermillExecutionError, match="no preset file.*presets for 'coordination_game'"):
        pm.execute_notebook(str(nb), str(tmp_path / "o.ipynb"), parameters={"preset": "nope"},
                            kernel_name="python3", progress_bar=False, cwd=str(ROOT))
