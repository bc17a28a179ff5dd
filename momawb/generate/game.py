"""Dataset generators, reproducible from a seed, cached by config under ``outputs/datasets/``.

Coordination Game (PAPER.md Table 1): independent random agents, agent i picks *right* with
probability ``p_right[i]``. The named datasets are

=============  =============  =====================================================
name           p_right        expected score = P(all agree) (2 agents)
=============  =============  =====================================================
favorable      (0.75, 0.75)   0.75^2 + 0.25^2 = 0.625   (paper measured 0.623)
neutral        (0.5, 0.5)     0.5                       (paper measured 0.502)
unfavorable    (0.25, 0.75)   2 * 0.25 * 0.75 = 0.375   (paper measured 0.375)
=============  =============  =====================================================

The paper does not give the dataset size; 1,000 episodes of 10 rounds (10,000 transitions)
put the measured score within about +-0.005 (one s.e.) of the expected one.

The other domains' generators: `momawb.generate.reacher`, `momawb.generate.ant`; `momawb.generate`
reaches all of them by name (`momawb.generate.named_dataset`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from momawb.config import Config, param, register
from momawb.datasets import Dataset, library_versions
from momawb.domains import game
from momawb.generate.cache import cached
from momawb.runs import config_hash, outputs_root

__all__ = ["DATASETS", "named_dataset", "GameDatasetConfig", "GAME_DATASETS", "game_dataset_config", "generate_game", "game_dataset",
           "expected_game_score"]

#: Table 1: name -> P(agent i picks right)
GAME_DATASETS: dict[str, tuple[float, ...]] = {
    "favorable": (0.75, 0.75),
    "neutral": (0.5, 0.5),
    "unfavorable": (0.25, 0.75),
}


@register("generator")
@dataclass
class GameDatasetConfig(Config):
    """Independent random agents in the Iterated Coordination Game (PAPER.md section 6)."""

    p_right: tuple[float, ...] = param((0.5, 0.5), "P(agent i plays right), one entry per agent (Table 1)",
                                       ge=0.0, le=1.0)
    n_episodes: int = param(1000, "episodes in the dataset (paper: not given)", ge=1)
    episode_length: int = param(10, "rounds per episode (see momawb.domains.game)", ge=1)
    seed: int = param(0, "generator seed", ge=0)
    name: str = param("custom", "dataset name stored in the file's metadata")

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.p_right) < 2:
            from momawb.config import ConfigError
            raise ConfigError(f"GameDatasetConfig.p_right needs one probability per agent (>= 2 agents), "
                              f"got {self.p_right!r}")


def game_dataset_config(name: str, **overrides) -> GameDatasetConfig:
    """The config of a Table 1 dataset by name ('favorable', 'neutral', 'unfavorable')."""
    if name not in GAME_DATASETS:
        raise ValueError(f"unknown game dataset {name!r}; known: {', '.join(GAME_DATASETS)} "
                         "(or build GameDatasetConfig(p_right=...) for custom probabilities)")
    return GameDatasetConfig(p_right=GAME_DATASETS[name], name=name, **overrides)


def expected_game_score(p_right) -> float:
    """P(all agents pick the same action) for independent agents."""
    p = np.asarray(p_right, dtype=np.float64)
    return float(np.prod(p) + np.prod(1 - p))


def generate_game(config: GameDatasetConfig) -> Dataset:
    """Sample the dataset in memory (vectorised over all rounds)."""
    rng = np.random.default_rng(config.seed)
    n_agents, T = len(config.p_right), config.episode_length
    n = config.n_episodes * T
    actions = (rng.random((n, n_agents)) < np.asarray(config.p_right)).astype(np.float32)
    rewards = game.team_reward(actions)
    states = np.ones((n, 1), np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[T - 1::T] = True
    domain = game.make_domain(n_agents, T)
    name = config.name if config.seed == 0 else f"{config.name}-seed{config.seed}"
    meta = {"name": name, "domain": "game", "task": domain.task, "generator": "independent-random",
            "generator_config": config.to_dict(), "seed": config.seed, "versions": library_versions(),
            "reference_returns": {"random": domain.reference_returns[0], "expert": domain.reference_returns[1]},
            "expected_score": expected_game_score(config.p_right)}
    return Dataset(states, actions, rewards, states.copy(), np.zeros(n, bool), timeouts, meta=meta,
                   source=f"generated game dataset {config.name}")


def game_dataset(config: GameDatasetConfig | str, root: str | Path | None = None) -> Dataset:
    """Load the dataset from the cache, generating and saving it first when absent."""
    if isinstance(config, str):
        config = game_dataset_config(config)
    path = outputs_root(root) / "datasets" / f"game-{config.name}-{config_hash(config)}.hdf5"
    return cached(path, lambda: generate_game(config))


DATASETS = tuple(GAME_DATASETS)


def named_dataset(name: str, root: str | Path | None = None, progress: bool = False, workers: int = 1,
                  **overrides) -> Dataset:
    """A Table 1 dataset by name, cached (``progress`` and ``workers`` are accepted for the
    common interface: a game dataset takes milliseconds)."""
    return game_dataset(game_dataset_config(name, **overrides), root)
