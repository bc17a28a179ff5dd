"""Run a notebook headless with its progress on the console and a summary at the end.

    python -m momawb.execute coordination_game                       # what `make run` does
    python -m momawb.execute reacher outputs/reacher-cpu.ipynb -p preset cpu -p observation independent
    python -m momawb.execute notebooks/coordination_game.ipynb out.ipynb -f my.yaml

This is papermill (``papermill.execute_notebook``) with the cells' outputs streamed to the
console as they come (papermill's ``--log-output``: the set-up cell's estimate, the text
progress bars of datasets, world models and jobs, the tables), then a summary: where the
executed notebook, ``results.json`` and the saved tables are, how to open the notebook, and
the headline table (``Parameters.headline``). ``-p`` values are read as YAML, like papermill's
``-y`` (``-p seeds 3``, ``-p methods '[iql, ibc]'``); ``-f`` reads a YAML file of parameters and
sections. The notebook executes into ``<output>.running.ipynb`` and replaces ``output`` only when
every cell ran; exit status 1 when a cell fails, with the partly executed notebook kept as
``<output>.failed.ipynb`` (a good earlier ``output`` is left as it was).
"""
from __future__ import annotations

import argparse
import ast
import logging
import os
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _default_parameters(nb_path: Path) -> dict:
    """Name -> literal default of the notebook's ``parameters`` cell."""
    import nbformat
    nb = nbformat.read(nb_path, as_version=4)
    cell = next((c for c in nb.cells if "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return {}
    out = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    try:
                        out[t.id] = ast.literal_eval(node.value)
                    except ValueError:
                        pass
    return out


def summary(name: str, output: Path, preset: str, took: float, dataset: str | None = None) -> str:
    """The lines printed after a run: files, how to open them, the headline table. ``dataset``:
    the Ant notebooks' parameter (their tables are kept per dataset)."""
    from momawb.notebook import NOTEBOOKS
    from momawb.parameters import tables_folder
    from momawb.runs import outputs_root
    out_dir = outputs_root() / name / preset
    lines = ["", "=" * 78, f"{name} (preset {preset!r}) finished in {took / 60:.1f} min",
             f"executed notebook: {output} ({output.stat().st_size / 1e3:.0f} kB)",
             f"results (every finished run of this preset, merged by run): {out_dir / 'results.json'}"]
    spec = NOTEBOOKS.get(name)
    per_dataset = dataset is not None and spec is not None and hasattr(spec, "tables_folder")
    table_dir = out_dir / "tables" / (tables_folder(dataset) if per_dataset else "")
    tables = sorted(table_dir.glob("*.md")) if table_dir.is_dir() else []
    if tables:
        lines.append(f"tables (CSV, markdown, LaTeX): {table_dir}/ " + " ".join(p.stem for p in tables))
    lines += ["open it: make lab, or .venv/bin/jupyter lab " + str(output) + " (run `jupyter trust " + str(output)
              + "` first to show its widgets as widgets)",
              f"as HTML: .venv/bin/jupyter nbconvert --to html {output}"]
    head = spec.headline if spec is not None else ""
    path = table_dir / f"{head}.md"
    if head and path.exists():
        lines += ["", path.read_text().rstrip()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m momawb.execute", description=__doc__.split("\n\n")[0])
    ap.add_argument("notebook", help="a name under notebooks/ (coordination_game, reacher, ...) or a .ipynb path")
    ap.add_argument("output", nargs="?", help="executed notebook (default outputs/<name>.ipynb)")
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a parameter; VALUE is read as YAML")
    ap.add_argument("-f", action="append", default=[], metavar="FILE", help="YAML file of parameters and sections")
    ap.add_argument("--quiet", action="store_true", help="do not stream the cells' outputs")
    args = ap.parse_args(argv)
    import papermill as pm
    src = Path(args.notebook)
    if src.suffix != ".ipynb":
        src = ROOT / "notebooks" / f"{args.notebook}.ipynb"
    if not src.exists():
        have = ", ".join(p.stem for p in sorted((ROOT / "notebooks").glob("*.ipynb")))
        print(f"no notebook {src}; notebooks: {have}", file=sys.stderr)
        return 2
    name = src.stem
    output = Path(args.output or ROOT / "outputs" / f"{name}.ipynb")
    output.parent.mkdir(parents=True, exist_ok=True)
    params: dict = {}
    for f in args.f:
        data = yaml.safe_load(Path(f).read_text()) or {}
        if not isinstance(data, dict):
            print(f"{f} must hold a mapping of parameters and sections", file=sys.stderr)
            return 2
        params.update(data)
    for k, v in args.p:
        params[k] = yaml.safe_load(v)
    defaults = _default_parameters(src)
    preset = params.get("preset", defaults.get("preset", "ci"))
    dataset = params.get("dataset", defaults.get("dataset"))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.WARNING if args.quiet else logging.INFO)
    # executed beside the output and moved onto it only when every cell ran: a failed run (a
    # misspelt parameter stops the set-up cell) never replaces a good executed notebook
    partial = output.with_name(output.stem + ".running.ipynb")
    print(f"running {src} -> {output} with {params or 'its default parameters'} (while it runs: {partial})",
          flush=True)
    t0 = time.time()
    try:
        pm.execute_notebook(str(src), str(partial), parameters=params, kernel_name="python3",
                            log_output=not args.quiet, progress_bar=args.quiet, cwd=str(ROOT))
    except pm.PapermillExecutionError as e:
        failed = output.with_name(output.stem + ".failed.ipynb")
        os.replace(partial, failed)
        kept = f"; {output} is unchanged" if output.exists() else ""
        print(f"\n{name} stopped in cell {e.exec_count}: {e.ename}: {e.evalue}\n"
              f"the partly executed notebook is {failed}{kept}", file=sys.stderr)
        return 1
    os.replace(partial, output)
    print(summary(name, output, str(preset), time.time() - t0, None if dataset is None else str(dataset)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
