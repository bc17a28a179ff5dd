"""Dataset generators, one module per domain, reached by name; cached under ``outputs/datasets/``.

=========  ==========================  ===========================================  ==================
domain     module                      named datasets                               preset section
=========  ==========================  ===========================================  ==================
game       `momawb.generate.game`      favorable, neutral, unfavorable (Table 1)    ``generator``
reacher    `momawb.generate.reacher`   expert-mix (Table 2)                         ``reacher_generator``
ant        `momawb.generate.ant`       random, medium, full-replay, expert          ``ant_generator``
=========  ==========================  ===========================================  ==================

Each module defines ``DATASETS`` (its names) and ``named_dataset(name, root, progress, workers, **overrides)``;
this package imports a domain's module only when asked for it (MuJoCo and Stable-Baselines3 load
only then), and the modules import only `momawb.generate.cache`, never each other. Command line:
``python -m momawb.generate ant --dataset medium --preset cpu`` (`momawb.generate.__main__`).
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from momawb.datasets import Dataset
from momawb.generate.cache import cached
from momawb.generate.game import (GAME_DATASETS, GameDatasetConfig, expected_game_score, game_dataset,
                                  game_dataset_config, generate_game)

__all__ = ["named_dataset", "generator_module", "cached", "GENERATORS", "GENERATOR_SECTIONS", "NAMED_DATASETS",
           "GameDatasetConfig", "GAME_DATASETS", "game_dataset_config", "generate_game", "game_dataset",
           "expected_game_score"]

#: domain -> (generator module, preset section whose keys override its dataset config)
GENERATORS: dict[str, tuple[str, str]] = {
    "game": ("momawb.generate.game", "generator"),
    "reacher": ("momawb.generate.reacher", "reacher_generator"),
    "ant": ("momawb.generate.ant", "ant_generator"),
}
GENERATOR_SECTIONS = {domain: section for domain, (_, section) in GENERATORS.items()}
NAMED_DATASETS = tuple(GENERATORS)   # the domains with named datasets


def generator_module(domain: str):
    """The generator module of ``domain`` (imported on first use). Raises ValueError."""
    if domain not in GENERATORS:
        raise ValueError(f"domain {domain!r} has no dataset generator; known: {', '.join(GENERATORS)} "
                         "(or pass a dataset file path)")
    return importlib.import_module(GENERATORS[domain][0])


def named_dataset(domain: str, name: str, root: str | Path | None = None, seed: int | None = None,
                  progress: bool = False, workers: int = 1, **overrides) -> Dataset:
    """A domain's dataset by name ('favorable', 'expert-mix', 'medium', ...) or the path of a
    D4RL file or Minari dataset. ``seed`` asks for another sample of a generated dataset (None:
    its default seed); ``overrides`` change its generator config (a preset's
    ``GENERATOR_SECTIONS[domain]``); ``workers`` processes may share the generation (Reacher: its
    expert seeds), with the same result as one. A file is read by the domain's ``load_file`` when it has one
    (Ant: D4RL's 111-d and Minari's 105-d observations cut to the 27-d state).
    Raises ValueError (unknown domain or name), FileNotFoundError, DatasetError."""
    p = Path(name).expanduser()
    module = generator_module(domain)
    if p.suffix in (".hdf5", ".h5") or p.is_dir() or os.sep in name:
        return module.load_file(p) if hasattr(module, "load_file") else Dataset.load(p)
    if name not in module.DATASETS:
        raise ValueError(f"unknown {domain} dataset {name!r}; known: {', '.join(module.DATASETS)} "
                         "(or pass the path of a D4RL file or Minari dataset)")
    return module.named_dataset(name, root, progress=progress, workers=workers, **overrides,
                                **({} if seed is None else {"seed": seed}))
