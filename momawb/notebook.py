"""The set-up cell every notebook shares: parameters checked first, then the preset, the device,
the outputs folder and an estimate of the grid's wall time.

    from momawb import notebook
    nb = notebook.setup("coordination_game", globals())   # the cell after the parameters cell

`setup` reads the notebook's parameters from its namespace, checks every one against the
notebook's `Parameters` class (types, ranges, allowed names; a number may be written
``'1e-3'``; one name where a list is expected is a one-element list), reads
``params/<notebook>/<preset>.yaml`` and checks it in full (unknown keys and misspelled sections
are named, with the closest allowed name), then merges what papermill injected. Names and
notebook-level values are checked first, in plain Python (milliseconds); the sections then go
through their config dataclasses, which imports the algorithm modules (torch, a second or
two). Nothing is generated, trained or written before all checks pass; then the device and
the summary are printed.

Precedence, per value: the parameters cell (or what papermill ``-p``/``-f``/``-y`` put there)
wins, a parameter left at ``None`` takes the preset file's value (``seeds``, ``po_memory``); per
section key: papermill's sections > the preset file's section > the config dataclass default
(the paper's value). ``papermill nb.ipynb out.ipynb -f my.yaml`` therefore uses ``my.yaml``'s
sections: papermill injects every top-level key of the file as a variable and warns "Passed
unknown parameter" for the sections, and `setup` reads them back from the injected cell
(``# Parameters``, found in the kernel's input history). A name there that is neither a
parameter nor a section of this notebook stops the run, naming it.

The validated values replace the parameter variables in the namespace (``seeds`` is an int,
``datasets`` a tuple, ...), and `Setup` carries the rest: ``sections`` (preset + papermill, what
the notebook itself uses), ``overrides`` (papermill's sections only: jobs read the preset file
themselves and get these on top), ``out_dir`` (``outputs/<notebook>/<preset>``, created only
when results are written) and ``live`` (FigureWidgets and widgets in JupyterLab; static figures
and text progress bars when papermill, nbconvert or nbval run the notebook).
"""
from __future__ import annotations

import ast
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from momawb import config as cfg
from momawb.config import ConfigError
from momawb.parameters import (ANT_DATASETS, BACKENDS, NOTEBOOKS, AntAblationParameters,  # noqa: F401
                               AntParameters, GameParameters, Parameters, ReacherParameters, _field_choices,
                               register_notebook)

__all__ = ["Parameters", "NOTEBOOKS", "register_notebook", "GameParameters", "ReacherParameters", "AntParameters",
           "AntAblationParameters", "Setup", "setup", "check_preset", "injected_names", "running_headless"]


# ----------------------------------------------------------------------------- checks
def check_preset(spec: type[Parameters], data: Mapping, source: str,
                 sections: bool = True) -> tuple[dict, dict[str, dict]]:
    """Check a whole preset (or ``-f``) mapping: top-level keys must be parameters of ``spec``
    or its sections; every value is checked (the sections through their dataclasses, which
    imports the algorithm modules; ``sections=False`` leaves them for later). Returns
    (parameters, sections), coerced; a section holds only the keys the file gives."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source} must hold a mapping at the top level, got {type(data).__name__}")
    keys, known = spec.keys(), spec.sections()
    bad = [k for k in data if k not in keys and k not in known]
    if bad:
        foreign = [k for k in bad if k in cfg.SECTIONS]
        if foreign:
            raise ConfigError(f"{source}: section(s) {foreign} are not used by notebooks/{spec.notebook}; "
                              f"its sections: {', '.join(known)}")
        raise ConfigError(f"{cfg.unknown(bad, [*keys, *known], 'key', source)}; allowed: parameters "
                          f"{', '.join(keys)} or sections {', '.join(known)}")
    params = {k: cfg.check_value(spec, k, v) for k, v in data.items() if k in keys and v is not None}
    out: dict[str, dict] = {}
    for name in (k for k in data if k in known):
        if not isinstance(data[name] or {}, Mapping):
            raise ConfigError(f"{source} [{name}] must be a mapping of {name} keys (e.g. {{steps: 300}}), "
                              f"got {data[name]!r}")
        out[name] = _check_section(name, data[name] or {}, f"{source} [{name}]") if sections else dict(data[name] or {})
    return params, out


def _check_section(name: str, values: Any, source: str, base: Mapping | None = None) -> dict:
    """``values`` (on top of ``base``) checked through the section's dataclass; the coerced
    values of the keys given."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source} must be a mapping of {name} keys (e.g. {{steps: 300}}), got {values!r}")
    merged = {**(base or {}), **values}
    obj = cfg.build(cfg.section_class(name), merged, source)
    return {k: getattr(obj, k) for k in merged}


def injected_names(ns: Mapping) -> dict[str, Any]:
    """Names papermill injected (``-p``, ``-f``, ``-y``): the assignments of the last executed
    cell that starts with papermill's ``# Parameters`` comment (IPython's input history
    ``_ih``), with their current values in ``ns``. Empty when the notebook was not parameterised."""
    for src in reversed(list(ns.get("_ih") or ())):
        if src.lstrip().startswith("# Parameters"):
            try:
                tree = ast.parse(src)
            except SyntaxError:
                return {}
            names = [t.id for node in tree.body if isinstance(node, ast.Assign)
                     for t in node.targets if isinstance(t, ast.Name)]
            return {n: ns.get(n) for n in names}
    return {}


#: a kernel started by one of these runs headless (matched in the parent's command line)
HEADLESS_PARENTS = ("papermill", "nbconvert", "nbclient", "pytest", "momawb.execute")


def running_headless() -> bool:
    """True when the kernel was started by papermill, nbconvert, nbclient, pytest (nbval) or
    `momawb.execute`: nobody watches the cells run, so live widgets would only leave stale state
    in the file. Read from the parent process's program (its executable, script or ``-m``
    module, not its other arguments); unknown parents are interactive."""
    try:
        import psutil
        return any(tool in _program(psutil.Process(os.getppid()).cmdline()) for tool in HEADLESS_PARENTS)
    except Exception:
        return False


def _program(cmdline: list[str]) -> str:
    """'papermill' for ['python', '/venv/bin/papermill', ...] or ['python', '-m', 'papermill', ...]."""
    names = [os.path.basename(a) for a in cmdline[:1]]
    rest = cmdline[1:]
    while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c"):
        rest = rest[2:] if rest[0] in ("-X", "-W") else rest[1:]  # interpreter options (-X frozen_modules=off, -B)
    if rest:
        names.append(rest[1] if rest[0] == "-m" and len(rest) > 1 else os.path.basename(rest[0]))
    return " ".join(names).lower()


# ----------------------------------------------------------------------------- set-up
@dataclass
class Setup:
    """What `setup` returns: the checked parameters and everything the notebook needs."""

    notebook: str
    params: Parameters
    preset_file: Path
    sections: dict[str, dict]            # preset file + papermill, coerced: what the notebook uses
    overrides: dict[str, dict]           # papermill's sections only: jobs add these to the preset file
    injected: dict[str, Any]
    out_dir: Path
    live: bool
    changes: dict[str, dict] = field(default_factory=dict)   # section -> key -> (preset value, papermill's)
    device: str = "cpu"
    estimate: Any = None                 # the last `momawb.estimate.Estimate`
    lines: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:  # nb.seeds, nb.methods, ... = the checked parameters
        if name.startswith("_") or name == "params":
            raise AttributeError(name)
        try:
            return getattr(self.params, name)
        except AttributeError:
            raise AttributeError(f"Setup has no attribute or parameter {name!r}") from None

    @property
    def preset(self) -> str:
        return self.params.preset

    @property
    def job_notebook(self) -> str:
        """Whose preset files configure this notebook's jobs (``Job.notebook``): its own, or
        ``sections_from``'s (the ablations run MOMA-PPO as the Ant notebook configures it)."""
        return type(self.params).sections_from or self.notebook

    def estimate_wall_time(self, jobs, **kw) -> None:
        """Print `momawb.estimate.estimate` of ``jobs`` on this machine (kept as ``estimate``)."""
        from momawb.estimate import estimate
        kw.setdefault("backend", self.params.backend)
        kw.setdefault("workers_per_gpu", self.params.workers_per_gpu)   # as `run`'s sweep
        self.estimate = estimate(jobs, **kw)
        print(self.estimate)

    def run(self, jobs, on_result=None, **kw) -> list[dict]:
        """`momawb.sweep.sweep` of ``jobs`` with this notebook's ``backend``, ``ray_address`` and
        ``workers_per_gpu``; the rows are merged into ``out_dir/results.json`` (`write_results`)
        and the wall time is printed beside the estimate. Returns the rows of ``jobs``, in job
        order."""
        import time
        from momawb.sweep import sweep
        t0 = time.time()
        kw.setdefault("workers_per_gpu", self.params.workers_per_gpu)
        rows = sweep(jobs, backend=self.params.backend, address=self.params.ray_address, on_result=on_result, **kw)
        took = time.time() - t0
        path = self.write_results(rows)
        est = f"; estimated {self.estimate.brief} from scratch" if self.estimate is not None else ""
        print(f"{len(rows)} runs in {took / 60:.1f} min{est}\nresults of every finished run of "
              f"{self.notebook}/{self.preset} (merged by run): {path}")
        return rows

    def write_results(self, rows) -> Path:
        """Merge ``rows`` into ``out_dir/results.json``; rows of other finished runs are kept."""
        from momawb.results import write_results
        return write_results(self.out_dir / "results.json", rows, notebook=self.notebook, preset=self.preset)

    def save_table(self, table, name: str) -> None:
        """``table.save`` as ``out_dir/tables/<name>.{csv,md,tex}``, or ``tables/<dataset>/...``
        for a notebook run on one dataset of several (the Ant notebooks: a run on ``expert`` must
        not replace the tables of ``medium``). Prints the names, not the machine-dependent folder."""
        sub = getattr(self.params, "tables_folder", "")
        table.save(self.out_dir / "tables" / sub, name)
        print(f"saved tables/{sub + '/' if sub else ''}{name}.csv, .md, .tex in the outputs folder")


def setup(notebook: str, ns: dict, *, quiet: bool = False) -> Setup:
    """Check the parameters in ``ns`` (a notebook's ``globals()``) and the preset; see the
    module docstring. Raises `ConfigError` naming the parameter, the value and the allowed form."""
    if notebook not in NOTEBOOKS:
        raise ConfigError(f"no parameters declared for notebook {notebook!r}; known: {', '.join(NOTEBOOKS)}")
    spec = NOTEBOOKS[notebook]
    keys, sections = spec.keys(), spec.sections()
    missing = [k for k in keys if k not in ns]
    if missing:
        raise ConfigError(f"the parameters cell of notebooks/{notebook} does not define {missing}")
    injected = injected_names(ns)
    source = "papermill parameters (-p/-f/-y)"
    raw = {k: ns[k] for k in keys}
    live = cfg.check_value(spec, "live", raw["live"])
    live = (not running_headless()) if live is None else live
    if not live:
        _text_progress()  # before the section checks import momawb's training modules
    # 1. names and notebook-level values (plain Python: fails in milliseconds)
    check_preset(spec, injected, source, sections=False)
    if raw["preset"] is None and spec.default_preset() is not None:
        raw["preset"] = spec.default_preset()
    cfg.check_value(spec, "preset", raw["preset"])
    data, preset_file = cfg.read_preset(notebook, raw["preset"])
    from_file, file_sections = check_preset(spec, data, str(preset_file), sections=False)
    for k in spec.from_preset:
        if raw[k] is None:
            if k not in from_file:
                raise ConfigError(f"parameter {k!r} is None (the preset's value) but {preset_file} has no "
                                  f"{k!r}; pass -p {k} <value> or add it to the file")
            raw[k] = from_file[k]
    params = spec(**raw)
    if spec.sections_from:  # this notebook's sections are another notebook's (the same runs)
        if file_sections:
            raise ConfigError(f"{preset_file}: sections {sorted(file_sections)} belong in "
                              f"params/{spec.sections_from}/{raw['preset']}.yaml (notebooks/{notebook} reads them "
                              "there); pass changes with papermill (-y) instead")
        other, preset_file = cfg.read_preset(spec.sections_from, raw["preset"])
        file_sections = {k: dict(v or {}) for k, v in other.items() if k in sections}
    # 2. the sections through their dataclasses (imports the algorithm modules, torch)
    merged, overrides, changes = {}, {}, {}
    for name in sections:
        base = _check_section(name, file_sections.get(name, {}), f"{preset_file} [{name}]")
        extra = injected.get(name)
        merged[name] = _check_section(name, extra or {}, f"{source} [{name}]", base)
        if extra is not None:
            overrides[name] = {k: merged[name][k] for k in extra}
            default = cfg.section_class(name)()
            was = {k: base.get(k, getattr(default, k)) for k in extra}
            changes[name] = {k: (was[k], v) for k, v in overrides[name].items() if v != was[k]}
    for k in keys:
        ns[k] = getattr(params, k)
    from momawb import plots
    from momawb.runs import outputs_root
    plots.use_notebook_renderers()  # figures carry an HTML copy (nbconvert, nbviewer) beside plotly's JSON
    nb = Setup(notebook, params, preset_file, merged, overrides, injected,
               outputs_root() / notebook / params.preset, live, changes={k: v for k, v in changes.items() if v})
    nb.device = _device(merged)
    nb.lines = _summary(nb)
    if not quiet:
        print("\n".join(nb.lines))
    return nb


def _device(sections: Mapping[str, Mapping]) -> str:
    """The device runs take (`momawb.runs.pick_device`: CUDA when available), with its name; a
    section asking for CUDA where there is none fails here rather than in a worker."""
    import torch
    from momawb.runs import pick_device
    asked = {s: v["device"] for s, v in sections.items() if str(v.get("device", "auto")).startswith("cuda")}
    if asked and not torch.cuda.is_available():
        raise ConfigError(f"device {asked} asked for in the preset/papermill sections, but CUDA is not "
                          "available here; use device: auto or cpu")
    dev = pick_device()
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)}, {torch.cuda.device_count()} GPU(s))"
    return f"{dev.type} ({os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads)"


def _summary(nb: Setup) -> list[str]:
    import momawb
    p = nb.params
    shown = ", ".join(f"{f.name}={_fmt(getattr(p, f.name))}" for f in dataclasses.fields(p) if f.name != "preset")
    try:
        shown_file = nb.preset_file.relative_to(cfg.params_dir().parent)
    except ValueError:
        shown_file = nb.preset_file
    lines = [f"momawb {momawb.__version__} | notebooks/{nb.notebook} | preset {p.preset!r} from {shown_file}",
             f"parameters: {shown}"]
    if nb.overrides:
        lines.append("papermill's sections change the preset: " + "; ".join(
            f"{s} " + ", ".join(f"{k} {_fmt(a)} -> {_fmt(b)}" for k, (a, b) in sorted(v.items()))
            for s, v in nb.changes.items()) if nb.changes else "papermill's sections equal the preset's")
    lines += [f"device: {nb.device}",
              "display: " + ("live plots and widgets" if nb.live else "static figures, text progress bars"),
              f"outputs: {nb.out_dir}"]
    return lines


def _fmt(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _text_progress() -> None:
    """tqdm.auto bars become plain text (they stream with papermill ``--log-output`` and keep
    their final line in the saved file): modules imported after this call bind the text class,
    momawb modules imported before it are rebound."""
    import sys

    import tqdm.auto
    import tqdm.std
    widget_bar = tqdm.auto.tqdm
    tqdm.auto.tqdm, tqdm.auto.trange = tqdm.std.tqdm, tqdm.std.trange
    for name, mod in list(sys.modules.items()):
        if name.startswith("momawb.") and getattr(mod, "tqdm", None) is widget_bar:
            mod.tqdm = tqdm.std.tqdm


def parameter_docs(notebook: str) -> str:
    """One line per parameter: name, type, allowed values and meaning (README, --help)."""
    spec = NOTEBOOKS[notebook]
    hints = typing.get_type_hints(spec)
    return "\n".join(f"{f.name} ({cfg._type_name(hints[f.name])}): {f.metadata['doc']}"
                     + (f"; {cfg._allowed(f.metadata)}" if not cfg._allowed(f.metadata).startswith("any") else "")
                     for f in dataclasses.fields(spec))

