"""One entry point for every method: ``train(method, dataset, domain, config)``.

Notebooks and sweeps call every method the same way and get the same run directory layout
and result format. Each method module provides a function

    fn(config, dataset, domain, run, *, progress=True, **extra) -> Team

that trains (resuming from ``run``'s checkpoint when there is one) and returns the team. This
module then runs the final greedy evaluation (PAPER.md section 7: 100 episodes) and writes
``result.json`` beside the checkpoint: the final score, the learning curve (``eval/score``
rows of the metric log), the config, library versions and wall time. A finished run is not
trained again: its team is rebuilt from the checkpoint and its result read back.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from momawb import config as cfg
from momawb.datasets import Dataset, library_versions
from momawb.evaluation import evaluate, mean_se
from momawb.runs import Run, config_hash

__all__ = ["METHODS", "TrainResult", "train", "method_config", "dataset_tag"]

#: method -> ("module:function", preset section)
METHODS: dict[str, tuple[str, str]] = {
    "moma_ppo": ("momawb.moma_ppo:train", "moma_ppo"),
    "iql": ("momawb.baselines.iql:train_iql", "iql"),
    "maiql": ("momawb.baselines.iql:train_maiql", "maiql"),
    "maiql_ft": ("momawb.baselines.iql:train_maiql_ft", "maiql_ft"),
    "ibc": ("momawb.baselines.bc:train", "ibc"),
    "matd3bc": ("momawb.baselines.td3bc:train_matd3bc", "matd3bc"),
    "itd3bc": ("momawb.baselines.td3bc:train_itd3bc", "itd3bc"),
    "icql": ("momawb.baselines.cql:train_icql", "icql"),
    "iomar": ("momawb.baselines.cql:train_iomar", "iomar"),
}

#: names shown in tables, as in the paper
DISPLAY = {"moma_ppo": "MOMA-PPO", "iql": "IQL", "maiql": "MAIQL", "maiql_ft": "MAIQL-ft",
           "ibc": "IBC", "matd3bc": "MATD3+BC", "itd3bc": "ITD3+BC", "icql": "ICQL", "iomar": "IOMAR"}


@dataclass
class TrainResult:
    method: str
    seed: int
    score: float                 # mean normalised score of the final greedy evaluation
    score_se: float              # its standard error over episodes
    curve: list[tuple[int, float]]
    run_dir: Path
    config: dict
    wall_time: float
    team: Any = None

    def to_dict(self) -> dict:
        return {"method": self.method, "seed": self.seed, "score": self.score, "score_se": self.score_se,
                "curve": self.curve, "run_dir": str(self.run_dir), "config": self.config,
                "wall_time": self.wall_time}


def eval_curve(metric_rows) -> list[tuple[int, float]]:
    """(step, greedy evaluation score) of a run's metric rows (``eval/score``), in order."""
    return [(int(r["step"]), float(r["eval/score"])) for r in metric_rows if "eval/score" in r]


def dataset_tag(dataset: Dataset) -> str:
    """A short name for a dataset: its ``name`` metadata plus a hash of its generator config
    (two samples or sizes of one named dataset never share runs), else a hash of its content."""
    name = dataset.meta.get("name")
    if name:
        gen = dataset.meta.get("generator_config")
        return f"{name}-{config_hash(gen)[:6]}" if gen else str(name)
    return "data-" + config_hash({"n": len(dataset), "src": dataset.source,
                                  "r": float(dataset.rewards.sum())})


def method_config(method: str, notebook: str | None = None, preset: str | None = None,
                  overrides: Mapping[str, Any] | None = None) -> cfg.Config:
    """The config dataclass of ``method`` from a preset file and overrides."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    section = METHODS[method][1]
    return cfg.load(cfg.section_class(section), notebook, preset, overrides, section=section)


def _function(method: str):
    mod, fn = METHODS[method][0].split(":")
    return getattr(importlib.import_module(mod), fn)


def train(method: str, dataset: Dataset, domain, config: cfg.Config | Mapping | None = None, *,
          seed: int = 0, root: str | None = None, eval_episodes: int = 100, eval_seed: int = 10_101,
          progress: bool = True, **extra: Any) -> TrainResult:
    """Train ``method`` on ``dataset`` in ``domain`` with ``seed``; evaluate; write result.json.

    ``config`` is the method's config dataclass, a mapping of overrides, or None (defaults).
    ``extra`` goes to the method (e.g. ``world_model=`` for MOMA-PPO).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if not isinstance(config, cfg.Config):
        config = method_config(method, overrides=config)
    name = f"{domain.name}-{domain.task}/{dataset_tag(dataset)}/{method}"
    key = {"method": method, "config": config, "eval_episodes": eval_episodes, "eval_seed": eval_seed}
    if extra.get("world_model") is not None:  # a policy trained in a model depends on that model
        key["world_model"] = extra["world_model"].identity()
    run = Run(name, key, seed=seed, root=root, device=getattr(config, "device", None))
    done = run.read_json("result.json")
    team = _function(method)(config, dataset, domain, run, progress=progress, **extra)
    if done is not None:
        return TrainResult(**{**{k: done[k] for k in ("method", "seed", "score", "score_se", "config",
                                                      "wall_time")},
                              "curve": [tuple(c) for c in done["curve"]], "run_dir": run.dir, "team": team})
    ev = evaluate(team, domain, episodes=eval_episodes, seed=eval_seed + seed, device=run.device)
    mean, se = mean_se(ev.scores)
    curve = eval_curve(run.metrics())
    result = TrainResult(method, seed, mean, se, curve, run.dir, run.config, run.wall_time(), team)
    run.write_json("result.json", {**result.to_dict(), "versions": library_versions(),
                                   "eval": ev.summary()})
    return result
