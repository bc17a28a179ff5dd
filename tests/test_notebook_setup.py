"""The notebooks' set-up (`momawb.notebook.setup`) on the parameter cases of issue 14 (items 6, 7,
8, 10, 11, 13), without a kernel: the namespace a papermill run gives the set-up cell is built
with papermill's own translator, so the injected cell is exactly what papermill writes."""
import math

import pytest
import yaml
from papermill.translators import translate_parameters

from momawb import config as cfg
from momawb import notebook, results, sweep
from momawb.train import method_config

GAME = {"preset": "ci", "datasets": ["favorable", "neutral", "unfavorable"], "methods": ["iql", "maiql", "ibc", "moma_ppo"],
        "seeds": 10, "backend": "local", "ray_address": None, "workers_per_gpu": None, "live": None,
        "eval_episodes": 100}
REACHER = {"preset": "ci", "observation": ["fo", "independent", "leader"], "methods": ["iql", "ibc", "moma_ppo"],
           "seeds": None, "po_memory": None, "backend": "local", "ray_address": None, "workers_per_gpu": None,
           "live": None, "eval_episodes": 100}


def papermill_ns(defaults: dict, injected: dict | None = None) -> dict:
    """A kernel namespace after the parameters cell and papermill's injected cell."""
    ns = dict(defaults)
    ns["_ih"] = [""]
    if injected:
        src = translate_parameters("python3", "python", injected, "Parameters")
        exec(src, {}, ns)
        ns["_ih"].append(src)
    return ns


def setup(name, defaults, injected=None):
    return notebook.setup(name, papermill_ns(defaults, injected), quiet=True)


@pytest.fixture(autouse=True)
def _outputs(outputs):
    return outputs


def test_preset_file_sections_and_notebook_defaults():
    nb = setup("reacher", REACHER)
    assert nb.seeds == 1 and nb.po_memory is False            # None: the preset's (ci.yaml)
    assert nb.sections["iql"]["steps"] == 200 and nb.overrides == {}
    assert nb.out_dir.name == "ci" and not nb.out_dir.exists()  # nothing written by the set-up


def test_workers_per_gpu_reaches_the_sweep_and_the_estimate(monkeypatch):
    """``-p workers_per_gpu 8`` (README "Speed on a GPU"): the notebook's sweep gets it, and so
    does its wall-time estimate, which packs the jobs on as many workers as the sweep will have."""
    import momawb.estimate
    import momawb.sweep
    seen = {}
    monkeypatch.setattr(momawb.sweep, "sweep", lambda jobs, **kw: seen.setdefault("sweep", kw) and [])
    monkeypatch.setattr(momawb.estimate, "estimate", lambda jobs, **kw: seen.setdefault("estimate", kw))
    nb = setup("coordination_game", {**GAME, "workers_per_gpu": 8})
    nb.estimate_wall_time([])
    nb.estimate = None
    nb.run([])
    assert seen["sweep"]["workers_per_gpu"] == 8 and seen["estimate"]["workers_per_gpu"] == 8
    seen.clear()
    nb = setup("coordination_game", GAME)
    nb.estimate_wall_time([])
    nb.estimate = None
    nb.run([])
    assert seen["sweep"]["workers_per_gpu"] is None and seen["estimate"]["workers_per_gpu"] is None
    with pytest.raises(cfg.ConfigError, match="workers_per_gpu"):
        setup("coordination_game", {**GAME, "workers_per_gpu": 0})


def test_f_file_sections_are_used(outputs):
    """Issue 14 item 6: `-f my.yaml` = the ci preset with its own iql section trains with it."""
    my = yaml.safe_load((cfg.params_dir() / "coordination_game" / "ci.yaml").read_text())
    my["iql"] = {"hidden": [8], "steps": 7, "eval_every": 0}
    ns = papermill_ns(GAME, my)
    nb = notebook.setup("coordination_game", ns, quiet=True)
    assert nb.overrides["iql"] == {"hidden": (8,), "steps": 7, "eval_every": 0}
    assert nb.changes == {"iql": {"hidden": ((32, 32), (8,)), "steps": (300, 7), "eval_every": (100, 0)}}
    job = sweep.grid(["iql"], ["neutral"], [0], notebook="coordination_game", preset=nb.preset,
                     overrides=nb.overrides)[0]
    c = method_config("iql", job.notebook, job.preset, job.section_overrides("iql"))
    assert (c.steps, c.hidden, c.eval_every, c.lr) == (7, (8,), 0, 0.001)  # lr from the preset file
    assert ns["seeds"] == 10


def test_f_file_with_unknown_names_stops():
    with pytest.raises(cfg.ConfigError, match=r"papermill.*'iqll' \(did you mean 'iql'\?\)"):
        setup("coordination_game", GAME, {"iqll": {"steps": 7}})
    with pytest.raises(cfg.ConfigError, match=r"'dataset' \(did you mean 'datasets'\?\)"):
        setup("coordination_game", GAME, {"dataset": "neutral"})
    with pytest.raises(cfg.ConfigError, match=r"\['icql'\] are not used by notebooks/coordination_game"):
        setup("coordination_game", GAME, {"icql": {"steps": 7}})
    with pytest.raises(cfg.ConfigError, match=r"IQLConfig.steps = 0 is out of range.*papermill.*\[iql\]"):
        setup("coordination_game", GAME, {"iql": {"steps": 0}})
    with pytest.raises(cfg.ConfigError, match=r"\[iql\] must be a mapping"):
        setup("coordination_game", GAME, {"iql": 7})


def test_one_name_for_a_list_and_numbers_written_other_ways():
    """Issue 14 item 7: `-p datasets neutral`, `-p seeds 2.0`; papermill passes strings for lists."""
    nb = setup("coordination_game", GAME, {"datasets": "neutral", "seeds": 2.0, "methods": "[ibc, iql]"})
    assert nb.datasets == ("neutral",) and nb.seeds == 2 and isinstance(nb.seeds, int)
    assert nb.methods == ("ibc", "iql")
    assert setup("reacher", REACHER, {"observation": "independent,leader"}).observation == ("independent", "leader")
    assert setup("coordination_game", GAME, {"seeds": "3", "eval_episodes": "1e2"}).eval_episodes == 100


@pytest.mark.parametrize("name,value,message", [
    ("seeds", 2.5, r"parameter 'seeds' = 2.5: expected int, allowed: >= 1"),
    ("seeds", "two", r"parameter 'seeds' = 'two': expected int"),
    ("seeds", 0, r"parameter 'seeds' = 0 is out of range; allowed: >= 1"),
    ("seeds", -1, r"parameter 'seeds' = -1 is out of range"),
    ("datasets", "nuetral", r"parameter 'datasets' = \('nuetral',\) is not allowed \(did you mean 'neutral'\?\)"),
    ("methods", ["iql", "itd3bc"], r"parameter 'methods'.*not allowed.*one of 'iql', 'maiql'"),
    ("backend", "pool", r"parameter 'backend' = 'pool' is not allowed.*'serial', 'local', 'ray'"),
    ("live", "yes", r"parameter 'live' = 'yes': expected bool or None"),
    ("preset", "nope", r"no preset file .*nope.yaml; presets for 'coordination_game': \['ci', 'cpu', 'gpu'\]"),
])
def test_bad_parameters_name_parameter_value_and_form(name, value, message, outputs):
    """Issue 14 items 7 and 11: checked first, naming the parameter, the value, the allowed form;
    nothing is written (item 13: a notebook that fails on its parameters writes nothing)."""
    with pytest.raises(cfg.ConfigError, match=message):
        setup("coordination_game", GAME, {name: value})
    assert not outputs.exists()


def test_reacher_unknown_method_and_setting_fail_first(outputs):
    """Issue 14 item 11: an unknown Reacher method failed after the 275 s expert training."""
    with pytest.raises(cfg.ConfigError, match=r"parameter 'methods' = \('iql', 'moma-ppo'\).*did you mean 'moma_ppo'"):
        setup("reacher", REACHER, {"methods": ["iql", "moma-ppo"]})
    with pytest.raises(cfg.ConfigError, match=r"parameter 'observation'.*'lead'.*did you mean 'leader'"):
        setup("reacher", REACHER, {"observation": "lead"})
    assert not outputs.exists()


@pytest.fixture
def own_presets(tmp_path, monkeypatch):
    """params/<notebook>/ in a temporary folder, holding copies of the real preset files."""
    for nb_dir in cfg.params_dir().iterdir():
        (tmp_path / nb_dir.name).mkdir()
        for f in nb_dir.glob("*.yaml"):
            (tmp_path / nb_dir.name / f.name).write_text(f.read_text())
    monkeypatch.setattr(cfg, "PARAMS_DIR", tmp_path)
    return tmp_path


def test_own_preset_file_is_validated_in_full(own_presets):
    """Issue 14 item 10: `-p preset mine` with a misspelled section or an unknown key."""
    ci = (own_presets / "coordination_game" / "ci.yaml").read_text()
    (own_presets / "coordination_game" / "mine.yaml").write_text(ci.replace("\niql:", "\niqll:").replace("maiql: *modelfree\nibc: *modelfree", "ibc: *modelfree"))
    with pytest.raises(cfg.ConfigError, match=r"mine.yaml: unknown key 'iqll' \(did you mean 'iql'\?\)"):
        setup("coordination_game", GAME, {"preset": "mine"})
    (own_presets / "coordination_game" / "mine.yaml").write_text(ci + "seed: 3\n")
    with pytest.raises(cfg.ConfigError, match=r"mine.yaml: unknown key 'seed' \(did you mean 'seeds'\?\)"):
        setup("coordination_game", GAME, {"preset": "mine"})
    (own_presets / "coordination_game" / "mine.yaml").write_text(ci + "seeds: 0\n")
    with pytest.raises(cfg.ConfigError, match=r"parameter 'seeds' = 0 is out of range"):
        setup("coordination_game", GAME, {"preset": "mine"})
    (own_presets / "reacher" / "mine.yaml").write_text("preset: mine\nreacher_generator: {max_seeds: 1}\n")
    with pytest.raises(cfg.ConfigError, match=r"parameter 'seeds' is None \(the preset's value\) but .*mine.yaml"):
        setup("reacher", REACHER, {"preset": "mine"})


def test_numeric_strings_in_preset_files(own_presets):
    """Issue 14 item 8: PyYAML reads `lr: 1e-3` and `steps: 1e5` as strings (YAML 1.1)."""
    text = "preset: mine\niql:\n  lr: 1e-3\n  steps: 1e2\n  hidden: 64\n"
    assert yaml.safe_load(text)["iql"]["lr"] == "1e-3"
    (own_presets / "coordination_game" / "mine.yaml").write_text(text)
    nb = setup("coordination_game", GAME, {"preset": "mine"})
    assert nb.sections["iql"] == {"lr": 0.001, "steps": 100, "hidden": (64,)}
    c = method_config("iql", "coordination_game", "mine")
    assert (c.lr, c.steps, c.hidden) == (0.001, 100, (64,))


def test_every_preset_file_is_valid():
    """Every params/<notebook>/<preset>.yaml passes the check the notebooks make."""
    files = sorted(cfg.params_dir().glob("*/*.yaml"))
    assert files
    for f in files:
        if f.parent.name not in notebook.NOTEBOOKS:
            continue
        data = yaml.safe_load(f.read_text()) or {}
        notebook.check_preset(notebook.NOTEBOOKS[f.parent.name], data, str(f))
        assert data.get("preset") == f.stem, f"{f}: 'preset' must equal the file name"


def test_parameters_classes_match_the_parameters_cells():
    """Each notebook's parameters cell defines exactly its `Parameters` fields, and its defaults
    pass them; method and dataset choices are ones the library knows."""
    import ast

    import jupytext

    from momawb import ablations, generate
    from momawb.train import METHODS
    for name, spec in notebook.NOTEBOOKS.items():
        nb = jupytext.read(cfg.params_dir().parent / "notebooks" / f"{name}.py")
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        defaults = {t.id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body
                    if isinstance(node, ast.Assign) for t in node.targets}
        assert sorted(defaults) == sorted(spec.keys()), name
        notebook.setup(name, papermill_ns(defaults), quiet=True)
        known = ablations.VARIANTS if spec.sections_from else METHODS   # the ablations' methods are variants
        assert set(notebook._field_choices(spec, "methods")) <= set(known)
    assert set(notebook._field_choices(notebook.GameParameters, "datasets")) == set(generate.GAME_DATASETS)


def _cell_defaults(name: str) -> dict:
    import ast

    import jupytext
    nb = jupytext.read(cfg.params_dir().parent / "notebooks" / f"{name}.py")
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return {t.id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body
            if isinstance(node, ast.Assign) for t in node.targets}


def test_ant_tables_of_each_dataset_keep_their_own_folder(tmp_path, capsys):
    """A run of the Ant notebook on `expert` replaced the tables its run on `medium` had
    written; a user's `ant_medium-v2.hdf5` must not replace the generated `medium`'s either."""
    from momawb.tables import Table
    own = tmp_path / "ant_medium-v2.hdf5"
    own.write_bytes(b"")
    folders = []
    for dataset in ("medium", "expert", str(own)):
        nb = setup("ant", _cell_defaults("ant"), {"preset": "ci", "dataset": dataset})
        nb.save_table(Table(["dataset"], [[dataset]], dataset), "table2")
        folders.append(nb.params.tables_folder)
    assert folders[:2] == ["medium", "expert"] and folders[2].startswith("ant_medium-v2.hdf5-")
    for folder, dataset in zip(folders, ("medium", "expert", str(own))):
        assert dataset in (nb.out_dir / "tables" / folder / "table2.md").read_text()
    assert "saved tables/medium/table2.csv, .md, .tex" in capsys.readouterr().out
    game = setup("coordination_game", GAME)                     # one table set per preset: no folder
    game.save_table(Table(["x"], [["1"]], "t"), "table3")
    assert (game.out_dir / "tables" / "table3.csv").exists()


def test_injected_names_read_papermill_cell():
    ns = papermill_ns(GAME, {"seeds": 3, "iql": {"steps": 7}})
    assert notebook.injected_names(ns) == {"seeds": 3, "iql": {"steps": 7}}
    assert notebook.injected_names(papermill_ns(GAME)) == {}


def test_results_file_merges_by_run(tmp_path):
    """Issue 14 item 13: a subset run keeps the rows other finished runs produced."""
    def row(m, seed, score):
        return {"method": m, "dataset": "neutral", "task": "default", "seed": seed, "score": score,
                "run_dir": f"/x/outputs/runs/game-2/neutral-abc/{m}-{seed}{m}"}
    path = tmp_path / "coordination_game" / "ci" / "results.json"
    results.write_results(path, [row("iql", s, 0.5) for s in range(3)] + [row("ibc", 0, 0.1)], notebook="g")
    results.write_results(path, [row("iql", 1, 0.9)], notebook="g")          # one method, one seed
    rows = results.read_results(path)["rows"]
    assert len(rows) == 4 and sorted(r["score"] for r in rows) == [0.1, 0.5, 0.5, 0.9]
    assert [r["score"] for r in results.read_results(path, rows_of=[row("iql", 1, 0)])["rows"]] == [0.9]
    results.write_results(path, [], notebook="g")                              # an empty grid loses nothing
    assert len(results.read_results(path)["rows"]) == 4


def test_unreadable_results_file_is_kept_aside(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"rows": [{"method": "iql"')                              # torn
    with pytest.raises(ValueError, match="results.json is not valid JSON"):
        results.read_results(path)
    with pytest.warns(UserWarning, match="moved to"):
        results.write_results(path, [{"method": "ibc", "run_dir": "/o/runs/a/b"}])
    assert len(results.read_results(path)["rows"]) == 1
    assert len(list(tmp_path.glob("results.json.unreadable-*"))) == 1


def test_estimate_times_real_steps_and_writes_nothing(outputs):
    from momawb import estimate
    jobs = sweep.grid(["ibc", "moma_ppo"], ["neutral"], range(2), notebook="coordination_game", preset="ci",
                      eval_episodes=5)
    est = estimate.estimate(jobs, backend="serial", probe_steps=3)
    assert set(est.step_seconds) == {"ibc", "moma_ppo", "world_model"}
    assert all(s > 0 and math.isfinite(s) for s in est.step_seconds.values())
    ibc = method_config("ibc", "coordination_game", "ci")
    assert est.job_seconds["ibc"] >= 2 * ibc.steps * est.step_seconds["ibc"]
    assert est.seconds >= sum(est.job_seconds.values()) and "estimate" in str(est)
    assert not outputs.exists()
    assert estimate._pack([3, 1, 1, 1], 2) == 3 and estimate._pack([1, 1, 1, 1], 2) == 2
    # the local pool of 2: two world models (a dataset per seed) packed beside the IBC jobs
    jobs = sweep.grid(["ibc", "moma_ppo"], ["neutral"], range(2), notebook="coordination_game", preset="ci",
                      eval_episodes=5, resample_data=True)
    assert sweep.overlapped(sweep.tasks(jobs), "local", 2) and not sweep.overlapped(sweep.tasks(jobs), "serial", 1)
    pooled = estimate.estimate(jobs, backend="local", workers=2, probe_steps=3)
    assert math.isfinite(pooled.seconds) and pooled.seconds > 0 and not outputs.exists()


def test_headless_kernels_are_recognised(monkeypatch):
    """A kernel whose parent is pytest (nbval), papermill or momawb.execute runs headless; a
    JupyterLab server does not, even when a path among its arguments says 'pytest'."""
    import os
    monkeypatch.setattr(os, "getppid", os.getpid)          # this process: pytest
    assert notebook.running_headless()
    monkeypatch.setattr(notebook, "HEADLESS_PARENTS", ("papermill",))
    assert not notebook.running_headless()
    prog = notebook._program
    assert prog(["/v/bin/python", "/v/bin/papermill", "a.ipynb"]).endswith("papermill")
    assert prog(["python", "-X", "frozen_modules=off", "-m", "momawb.execute", "game"]).endswith("momawb.execute")
    assert "pytest" not in prog(["/v/bin/python", "-m", "jupyterlab", "--ServerApp.root_dir=/tmp/pytest-of-root/x"])


def test_bad_parameter_fails_before_heavy_imports():
    """Issue 14 item 11 ("validated first, in a second"): a bad parameter or preset key stops the
    set-up before torch or the training modules are imported (no wall-clock assertion: the
    fresh interpreter shows what was imported when the error came)."""
    import subprocess
    import sys
    code = ("import sys\nfrom momawb import notebook, config as cfg\n"
            f"ns = {dict(GAME, seeds=0)!r}\n"
            "try:\n    notebook.setup('coordination_game', ns)\nexcept cfg.ConfigError as e:\n    print(e)\n"
            "print(sorted(m for m in ('torch', 'momawb.sweep', 'momawb.runs', 'plotly') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "parameter 'seeds' = 0 is out of range" in out and out.strip().endswith("[]"), out
