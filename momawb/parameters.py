"""The notebooks' parameters cells as checked dataclasses, one class per notebook.

Each notebook's first cell (tagged ``parameters`` for papermill) assigns the fields of its class
here; `momawb.notebook.setup` checks them (types, ranges, allowed names) before anything runs,
then reads the notebook's preset file. Kept apart from `momawb.notebook` so that the checks are
plain Python (no torch) and every notebook's parameters are read in one place.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, ClassVar

from momawb import config as cfg
from momawb.ablations import VARIANTS
from momawb.config import Config, ConfigError, param

__all__ = ["Parameters", "NOTEBOOKS", "register_notebook", "GameParameters", "ReacherParameters", "AntParameters",
           "AntAblationParameters", "ANT_DATASETS", "BACKENDS"]

#: notebook name -> its `Parameters` class
NOTEBOOKS: dict[str, type["Parameters"]] = {}

BACKENDS = ("serial", "local", "ray")


def register_notebook(name: str):
    """Class decorator: ``cls`` declares the parameters cell of ``notebooks/<name>.ipynb``."""
    def deco(cls):
        cls.notebook = name
        NOTEBOOKS[name] = cls
        return cls
    return deco


@dataclass
class Parameters(Config):
    """A notebook's parameters cell as a checked dataclass (no defaults: the cell holds them).

    Class attributes: ``generator_section`` (the preset section of the notebook's dataset
    generator), ``from_preset`` (parameters whose ``None`` means "the preset file's value"),
    ``headline`` (the results table `make run` prints), ``sections_from`` (another notebook
    whose preset files hold this one's sections: its jobs are configured exactly as there).
    Every notebook has ``preset``, ``methods``, ``backend``, ``ray_address``, ``workers_per_gpu``
    and ``live``.
    """

    label: ClassVar[str] = "parameter"
    notebook: ClassVar[str] = ""
    generator_section: ClassVar[str | None] = None
    from_preset: ClassVar[tuple[str, ...]] = ()
    headline: ClassVar[str] = ""
    sections_from: ClassVar[str | None] = None

    @classmethod
    def default_preset(cls) -> str | None:
        """The preset a ``None`` preset parameter stands for (None: a preset must be named)."""
        return None

    @classmethod
    def sections(cls) -> tuple[str, ...]:
        """The preset sections this notebook uses: its generator, the world model, its methods."""
        methods = _field_choices(cls, "methods")
        return tuple(s for s in (cls.generator_section, "world_model", *methods) if s in cfg.SECTIONS)


def _field_choices(cls: type, name: str) -> tuple:
    return tuple({f.name: f for f in dataclasses.fields(cls)}[name].metadata.get("choices") or ())


def _p(doc: str, **kw: Any) -> Any:
    return param(MISSING, doc, **kw)


PRESET_DOC = "params/<notebook>/<preset>.yaml: ci (minutes, CI), cpu (2 cores), gpu (paper scale), or your own"
WORKERS_PER_GPU_DOC = ("jobs at once on each GPU (momawb.sweep's workers_per_gpu; None: one worker per core); more "
                       "than 2 need NVIDIA MPS running (README 'Speed on a GPU')")
LIVE_DOC = "None: live plots and widgets in JupyterLab, static figures under papermill/nbconvert/nbval"


@register_notebook("coordination_game")
@dataclass
class GameParameters(Parameters):
    """notebooks/coordination_game.ipynb: Table 1 and Table 3 (PAPER.md section 6)."""

    generator_section: ClassVar[str] = "generator"
    headline: ClassVar[str] = "table3"

    preset: str = _p(PRESET_DOC)
    datasets: tuple[str, ...] = _p("Table 1 datasets", choices=("favorable", "neutral", "unfavorable"))
    methods: tuple[str, ...] = _p("methods of Table 3 (discrete actions)",
                                  choices=("iql", "maiql", "maiql_ft", "ibc", "moma_ppo"))
    seeds: int = _p("seeds 0 .. seeds-1; each seed collects its own dataset", ge=1)
    backend: str = _p("where jobs run", choices=BACKENDS)
    ray_address: str | None = _p("an existing Ray cluster, or None for a local one")
    workers_per_gpu: int | None = _p(WORKERS_PER_GPU_DOC, ge=1)
    live: bool | None = _p(LIVE_DOC)
    eval_episodes: int = _p("greedy evaluation episodes per seed (paper 100)", ge=1)


@register_notebook("reacher")
@dataclass
class ReacherParameters(Parameters):
    """notebooks/reacher.ipynb: Table 2, Table 4a and the convention analysis."""

    generator_section: ClassVar[str] = "reacher_generator"
    from_preset: ClassVar[tuple[str, ...]] = ("seeds", "po_memory")
    headline: ClassVar[str] = "table4a"

    preset: str = _p(PRESET_DOC)
    observation: tuple[str, ...] = _p("observation settings of Table 4a", choices=("fo", "independent", "leader"))
    methods: tuple[str, ...] = _p("methods of Table 4a", choices=(
        "iql", "maiql", "maiql_ft", "matd3bc", "ibc", "itd3bc", "icql", "iomar", "moma_ppo"))
    seeds: int | None = _p("seeds 0 .. seeds-1 (None: the preset's)", ge=1)
    po_memory: bool | None = _p("attention memory under partial observability (None: the preset's)")
    backend: str = _p("where jobs run", choices=BACKENDS)
    ray_address: str | None = _p("an existing Ray cluster, or None for a local one")
    workers_per_gpu: int | None = _p(WORKERS_PER_GPU_DOC, ge=1)
    live: bool | None = _p(LIVE_DOC)
    eval_episodes: int = _p("greedy evaluation episodes per seed (paper 100)", ge=1)


ANT_DATASETS = ("random", "medium", "full-replay", "expert")   # momawb.generate.ant.DATASETS (not imported here: MuJoCo)


class _AntData:
    """An Ant notebook's ``dataset`` parameter (a generated name or a user's file) and its preset
    default (gpu where CUDA is available, else cpu)."""

    dataset: str

    @classmethod
    def default_preset(cls) -> str:
        from momawb.runs import pick_device
        return "gpu" if pick_device().type == "cuda" else "cpu"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dataset not in ANT_DATASETS and not Path(self.dataset).expanduser().exists():
            raise ConfigError(f"parameter dataset = {self.dataset!r} is neither a generated Ant dataset "
                              f"({', '.join(ANT_DATASETS)}) nor an existing D4RL .hdf5 file or Minari folder")

    @property
    def dataset_name(self) -> str:
        """The D4RL name the dataset stands for (Table 2 and 4b rows), from a path's file name too."""
        if self.dataset in ANT_DATASETS:
            return self.dataset
        stem = Path(self.dataset).name.lower().replace("_", "-")
        return next((n for n in ("full-replay", "medium", "expert", "random") if n in stem), stem)

    @property
    def tables_folder(self) -> str:
        return tables_folder(self.dataset)


def tables_folder(dataset: str) -> str:
    """Where under ``tables/`` an Ant notebook's tables of ``dataset`` go: the generated dataset's
    name, or a user's file name plus a hash of its full path (two files never share a folder, and
    a user's ``ant_medium-v2.hdf5`` never replaces the tables of the generated ``medium``)."""
    if dataset in ANT_DATASETS:
        return dataset
    path = Path(dataset).expanduser().resolve()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.name)
    return f"{safe}-{hashlib.sha1(str(path).encode()).hexdigest()[:6]}"


@register_notebook("ant")
@dataclass
class AntParameters(_AntData, Parameters):
    """notebooks/ant.ipynb: Table 2 (Ant), Table 4b, Table 5, gaits and mis-adapted partners."""

    generator_section: ClassVar[str] = "ant_generator"
    from_preset: ClassVar[tuple[str, ...]] = ("seeds", "po_memory", "table5", "eval_episodes")
    headline: ClassVar[str] = "table4b"

    preset: str | None = _p(PRESET_DOC + "; None: gpu where CUDA is available, else cpu")
    dataset: str = _p("a generated dataset (random, medium, full-replay, expert) or the path of a D4RL .hdf5 "
                      "file or Minari folder of Ant data")
    observability: tuple[str, ...] = _p("observation settings of Table 4b", choices=("fo", "po"))
    methods: tuple[str, ...] = _p("methods of Table 4b (IQL runs under fo only)", choices=(
        "iql", "maiql", "maiql_ft", "matd3bc", "ibc", "itd3bc", "icql", "iomar", "moma_ppo"))
    seeds: int | None = _p("seeds 0 .. seeds-1 (None: the preset's; the paper: 3)", ge=1)
    po_memory: bool | None = _p("attention memory under partial observability (None: the preset's)")
    table5: bool | None = _p("also train MOMA-PPO in the ground-truth simulator (Table 5; None: the preset's)")
    backend: str = _p("where jobs run", choices=BACKENDS)
    ray_address: str | None = _p("an existing Ray cluster, or None for a local one")
    workers_per_gpu: int | None = _p(WORKERS_PER_GPU_DOC, ge=1)
    live: bool | None = _p(LIVE_DOC)
    eval_episodes: int | None = _p("greedy evaluation episodes per seed (None: the preset's; the paper: 100)", ge=1)


@register_notebook("ant_ablations")
@dataclass
class AntAblationParameters(_AntData, Parameters):
    """notebooks/ant_ablations.ipynb: MOMA-PPO's ablations (PAPER.md section 7) on Ant, with the
    Ant notebook's presets (params/ant/<preset>.yaml) for the data, world model and MOMA-PPO."""

    generator_section: ClassVar[str] = "ant_generator"
    from_preset: ClassVar[tuple[str, ...]] = ("seeds", "po_memory", "eval_episodes")
    headline: ClassVar[str] = "ablations"
    sections_from: ClassVar[str] = "ant"

    preset: str | None = _p(PRESET_DOC + " (params/ant_ablations/ for seeds and episodes, params/ant/ for the "
                            "sections); None: gpu where CUDA is available, else cpu")
    dataset: str = _p("a generated Ant dataset (the paper's ablations: full-replay) or a D4RL/Minari path")
    observability: tuple[str, ...] = _p("observation settings", choices=("fo", "po"))
    methods: tuple[str, ...] = _p("the ablation variants (momawb.ablations.VARIANTS); moma_ppo is the reference",
                                  choices=tuple(VARIANTS))
    seeds: int | None = _p("seeds 0 .. seeds-1 per variant and setting (None: the preset's; the paper: 3)", ge=1)
    po_memory: bool | None = _p("attention memory under partial observability (None: the preset's)")
    backend: str = _p("where jobs run", choices=BACKENDS)
    ray_address: str | None = _p("an existing Ray cluster, or None for a local one")
    workers_per_gpu: int | None = _p(WORKERS_PER_GPU_DOC, ge=1)
    live: bool | None = _p(LIVE_DOC)
    eval_episodes: int | None = _p("greedy evaluation episodes per seed (None: the preset's)", ge=1)
    norm_rollouts: int = _p("model rollouts of the no-clipping plot", ge=1)

    @classmethod
    def sections(cls) -> tuple[str, ...]:
        return ("ant_generator", "world_model", "moma_ppo")

