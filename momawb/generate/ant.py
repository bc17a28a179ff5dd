"""Four-agent Ant datasets in D4RL's layout (PAPER.md section 6, Table 2), made here.

D4RL's ant files cannot be downloaded here, so we make the four datasets the paper uses the
way D4RL made them, from one single-agent learner on Ant-v5 (27-d state, the joint action in
actuator order, as `momawb.domains.ant` documents):

============  ===============================================================================
name          policy that collects it
============  ===============================================================================
random        the learner's randomly initialised policy (as D4RL; not uniform actions)
medium        a snapshot of the learner stopped at about a third of the expert's return
              (``medium_return_frac``) among the snapshots that walk forward at least
              ``medium_min_speed_frac`` of the expert's forward speed (standing still already
              scores about 1,000: 1 per healthy step)
full-replay   every transition of the learner's run up to the expert, in order; when more than
              ``size``, whole episodes evenly subsampled to about ``size``
expert        the learner's final policy
============  ===============================================================================

The learner is Stable-Baselines3's PPO with ``n_envs`` vectorised envs and VecNormalize (a
well-kept library's learner, not under study; measured on 2 cores: about 2,600 env steps/s,
return about 1,300 after 7-9 minutes and about 2,500 after 20; SB3's SAC ran 143 steps/s and
did not walk after 15 minutes). Its env is Ant-v5 with the four-agent domain's Markov forward
reward (`MarkovForwardAnt`, as ``forward_from="qpos"``), so dataset rewards are the ones the
domain's env and simulator give. random, medium and expert sample the policy's Gaussian actions
(D4RL collected with stochastic policies), clipped to [-1, 1].

Reference returns stored in each file (``reference_returns``, used by ``Domain.for_dataset``):
random = the random policy's mean episode return, expert = the final policy's mean *greedy*
return over ``eval_episodes``; D4RL's (-325.6, 3879.7) are stored beside them.

Everything lives under ``<outputs>/runs/ant-learner/<hash of the learner fields>``: PPO
snapshots (``snapshot-<steps>.zip`` with ``obs_rms-<steps>.npz``) every ``checkpoint_every``
env steps, the learner's episodes flushed with each snapshot (``replay-<steps>.npz``), the
greedy evaluation of each snapshot (``snapshots.json``) and collected episode batches. A killed
generation restarts from the last snapshot (the episodes in flight then are dropped; SB3 keeps
no RNG state, so a resumed learner is not bit-identical to an uninterrupted one) and keeps every
batch already written. Datasets are cached in ``outputs/datasets/ant-<name>-<config hash>.hdf5``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from momawb.config import Config, param, register
from momawb.datasets import Dataset, DatasetError, library_versions
from momawb.domains import ant
from momawb.generate.ant_learner import (MarkovForwardAnt, SnapshotPolicy, _learner_dir, _load_episodes,
                                         _save_episodes, _snapshots, episodes_to_arrays, policy_episodes,
                                         train_learner)
from momawb.generate.cache import cached
from momawb.runs import config_hash, outputs_root
from momawb.safe_files import atomic_write_bytes

__all__ = ["DATASETS", "AntDatasetConfig", "MarkovForwardAnt", "SnapshotPolicy", "choose_medium", "collect", "full_replay", "ant_dataset", "ant_dataset_config", "named_dataset",
           "load_file", "train_learner", "snapshot_stats", "policy_episodes", "episodes_to_arrays"]

DATASETS = ("random", "medium", "full-replay", "expert")
LEARNER_FIELDS = ("learner_steps", "n_envs", "ppo", "checkpoint_every", "seed")


@register("ant_generator")
@dataclass
class AntDatasetConfig(Config):
    """One of the four Ant datasets (module docstring); the learner fields are shared by all four."""

    learner_steps: int = param(3_000_000, "env steps of the PPO learner (its last snapshot is the expert)", ge=1)
    n_envs: int = param(8, "vectorised Ant-v5 envs of the learner", ge=1)
    ppo: dict = param(default_factory=lambda: {"n_steps": 1024, "batch_size": 256, "n_epochs": 10, "learning_rate": 3e-4,
                                               "gamma": 0.99, "gae_lambda": 0.95, "clip_range": 0.2},
                      doc="Stable-Baselines3 PPO keyword arguments (policy MlpPolicy, SB3's 64 x 64 tanh nets)")
    checkpoint_every: int = param(100_000, "env steps between learner snapshots (medium candidates, resume points)", ge=1)
    size: int = param(1_000_000, "transitions per dataset (D4RL: 1M); whole episodes, so about this many", ge=1)
    medium_return_frac: float = param(1 / 3, "medium: the snapshot whose greedy return is closest to this share "
                                      "of the expert's", gt=0, le=1)
    medium_min_speed_frac: float = param(0.25, "medium: only snapshots walking forward at least this share of the "
                                         "expert's mean forward speed (0: any snapshot)", ge=0, le=1)
    eval_episodes: int = param(10, "greedy episodes per snapshot (medium choice, expert reference return)", ge=1)
    batch_episodes: int = param(16, "episodes collected in lockstep per batch file", ge=1)
    seed: int = param(0, "learner and collection seed", ge=0)
    name: str = param("medium", "which dataset: random, medium, full-replay or expert")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.name not in DATASETS:
            from momawb.config import ConfigError
            raise ConfigError(f"AntDatasetConfig.name must be one of {', '.join(DATASETS)}, got {self.name!r}")

    def learner_key(self) -> dict:
        return {k: getattr(self, k) for k in LEARNER_FIELDS}


def ant_dataset_config(name: str, **overrides) -> AntDatasetConfig:
    """The config of a named Ant dataset ('random', 'medium', 'full-replay', 'expert')."""
    if name not in DATASETS:
        raise ValueError(f"unknown ant dataset {name!r}; known: {', '.join(DATASETS)}")
    return AntDatasetConfig(**{**overrides, "name": name})


def _speed(ep: dict) -> float:
    """Mean forward speed of an episode (m/s): torso x travelled / duration."""
    return float((ep["qpos"][-1, 0] - ep["qpos"][0, 0]) / (len(ep["actions"]) * 0.05))


def snapshot_stats(config: AntDatasetConfig, folder: Path, progress: bool = True) -> dict[int, dict]:
    """Greedy return, forward speed and length of every learner snapshot over ``eval_episodes``
    (cached in ``snapshots.json``): {env steps: {"return", "return_se", "speed", "length"}}."""
    path = folder / "snapshots.json"
    stats = {int(k): v for k, v in json.loads(path.read_text()).items()} if path.exists() else {}
    todo = [s for s in _snapshots(folder) if s not in stats]
    for steps in tqdm(todo, desc="ant snapshots (greedy evaluation)", disable=not progress):
        eps = policy_episodes(SnapshotPolicy(folder, steps), config.eval_episodes, 1_000_000 + config.seed, True)
        rets = np.array([e["rewards"].sum() for e in eps])
        stats[steps] = {"return": float(rets.mean()), "return_se": float(rets.std(ddof=1) / np.sqrt(len(rets)))
                        if len(rets) > 1 else 0.0, "speed": float(np.mean([_speed(e) for e in eps])),
                        "length": float(np.mean([len(e["actions"]) for e in eps]))}
        atomic_write_bytes(path, json.dumps({str(k): stats[k] for k in sorted(stats)}, indent=1).encode())
    return stats


def choose_medium(config: AntDatasetConfig, stats: dict[int, dict]) -> int:
    """The medium snapshot (module docstring). Raises RuntimeError when no snapshot walks."""
    final = max(stats)
    expert = stats[final]
    target = config.medium_return_frac * expert["return"]
    frac = config.medium_min_speed_frac     # 0: no speed requirement (a snapshot that drifts back counts too)
    walking = [s for s in stats if 0 < s < final and (frac == 0 or stats[s]["speed"] >= frac * expert["speed"])]
    if not walking or (frac > 0 and expert["speed"] <= 0):
        table = ", ".join(f"{s}: return {v['return']:.0f} speed {v['speed']:.2f}" for s, v in sorted(stats.items()))
        what = (f"walks forward at >= {frac:.2f} of the expert's speed" if frac > 0 else
                "lies between the first and the final one")
        raise RuntimeError(f"no learner snapshot {what} ({table}); train the learner longer (learner_steps) or "
                           "snapshot more often")
    return min(walking, key=lambda s: (abs(stats[s]["return"] - target), s))


def collect(config: AntDatasetConfig, folder: Path, steps: int, deterministic: bool = False,
            progress: bool = True) -> list[dict]:
    """Episodes of snapshot ``steps`` until ``config.size`` transitions, in batch files
    ``collect-<steps>-<seed>-<k>.npz`` (kept: a killed collection resumes at the next batch)."""
    policy, episodes, n, k = None, [], 0, 0
    bar = tqdm(total=config.size, desc=f"ant {config.name} (transitions)", disable=not progress, unit_scale=True)
    while n < config.size:
        path = folder / f"collect-{steps}-{config.seed}-{'greedy' if deterministic else 'sampled'}-{k}.npz"
        if path.exists():
            batch = _load_episodes(path)
        else:
            policy = policy or SnapshotPolicy(folder, steps)
            seed = 10_000_000 * (1 + config.seed) + steps // 1000 * 1000 + k * config.batch_episodes
            batch = policy_episodes(policy, config.batch_episodes, seed, deterministic)
            _save_episodes(path, batch)
        episodes += batch
        added = sum(len(e["actions"]) for e in batch)
        n, k = n + added, k + 1
        bar.update(min(added, config.size - bar.n))
    bar.close()
    return episodes


def full_replay(config: AntDatasetConfig, folder: Path) -> list[dict]:
    """The learner's episodes in order; when they hold more than ``size`` transitions, episode e
    is kept when floor((e + 1) f) > floor(e f) with f = size / total (evenly spread)."""
    episodes = [e for s in _snapshots(folder) if s <= config.learner_steps for e in _load_episodes(folder / f"replay-{s}.npz")]
    total = sum(len(e["actions"]) for e in episodes)
    if total <= config.size:
        return episodes
    f = config.size / total
    return [e for i, e in enumerate(episodes) if np.floor((i + 1) * f) > np.floor(i * f)]


def _cut(arrays: dict, size: int) -> dict:
    """The first ``size`` transitions; a cut episode's last kept step becomes a timeout (as D4RL's 1M cut)."""
    if len(arrays["rewards"]) <= size:
        return arrays
    out = {k: v[:size] for k, v in arrays.items()}
    if not out["terminals"][-1]:
        out["timeouts"] = out["timeouts"].copy()
        out["timeouts"][-1] = True
    return out


def generate_ant(config: AntDatasetConfig, root=None, progress: bool = True, log=print) -> Dataset:
    """Build one Ant dataset in memory, training or resuming the shared learner first."""
    t0 = time.perf_counter()
    folder = train_learner(config, root, progress, log)
    stats = snapshot_stats(config, folder, progress)
    final = max(s for s in stats if s <= max(config.learner_steps, min(stats)))
    medium = choose_medium(config, stats) if config.name == "medium" else None
    random_eps = collect(ant_dataset_config("random", **_fields(config)), folder, 0, progress=progress)
    source = {"random": 0, "medium": medium, "expert": final, "full-replay": None}[config.name]
    if config.name == "full-replay":
        episodes = full_replay(config, folder)
        arrays = episodes_to_arrays(episodes)
    else:
        episodes = random_eps if config.name == "random" else collect(config, folder, source, progress=progress)
        arrays = _cut(episodes_to_arrays(episodes), config.size)
    refs = {"random": float(np.mean([e["rewards"].sum() for e in random_eps])), "expert": stats[final]["return"],
            "source": "measured: random = the random dataset's mean episode return; expert = the final policy's mean "
                      f"greedy return over {config.eval_episodes} episodes"}
    learner = json.loads((folder / "learner.json").read_text()) if (folder / "learner.json").exists() else {}
    meta = {"name": config.name, "domain": "ant", "task": "fo", "generator": "sb3-ppo-learner",
            "generator_config": config.to_dict(), "seed": config.seed, "versions": library_versions(),
            "reference_returns": refs, "d4rl_reference_returns": dict(zip(("random", "expert"), ant.D4RL_REFERENCE_RETURNS)),
            "policy_snapshot_env_steps": source, "snapshots": {str(k): v for k, v in sorted(stats.items())},
            "medium_snapshot": medium, "expert_snapshot": final, "learner_dir": str(folder), "learner": learner,
            "reward": "Ant-v5 with the forward reward from the state acted on (momawb.domains.ant forward_from='qpos')",
            "generation_wall_s": time.perf_counter() - t0}
    n = len(arrays["rewards"])
    return Dataset(arrays["observations"].astype(np.float32), arrays["actions"], arrays["rewards"].astype(np.float32),
                   arrays["next_observations"].astype(np.float32), arrays["terminals"], arrays["timeouts"],
                   arrays["qpos"], arrays["qvel"], meta=meta, source=f"generated ant dataset {config.name} ({n:,} transitions)")


def _fields(config: AntDatasetConfig) -> dict:
    return {k: v for k, v in config.to_dict().items() if k != "name"}


def ant_dataset(config: AntDatasetConfig | str = "medium", root=None, progress: bool = True, log=print) -> Dataset:
    """Load an Ant dataset from the cache (``outputs/datasets/ant-<name>-<config hash>.hdf5``),
    generating it first when absent."""
    if isinstance(config, str):
        config = ant_dataset_config(config)
    path = outputs_root(root) / "datasets" / f"ant-{config.name}-{config_hash(config)}.hdf5"
    return cached(path, lambda: generate_ant(config, root, progress, log))


def named_dataset(name: str, root=None, progress: bool = True, workers: int = 1, **overrides) -> Dataset:
    """A named Ant dataset, cached; ``overrides`` change its config (a preset's ``ant_generator``).
    ``workers`` is accepted for the common interface (the datasets come from one learner run)."""
    return ant_dataset(ant_dataset_config(name, **overrides), root, progress)


def load_file(path) -> Dataset:
    """A user's D4RL ``ant-*-v2.hdf5`` (111-d observations) or Minari ``mujoco/ant`` dataset (105-d)
    as the 27-d Ant state (`momawb.domains.ant` docstring: the first 27 entries, no permutation).
    A D4RL v0/v1 file without timeouts or next_observations is cut into episodes of Ant's 1,000
    steps (as D4RL's own loader does), with a warning. Raises DatasetError when the widths are
    not an Ant's."""
    ds = Dataset.load(path, fallback_episode_length=ant.EPISODE_LENGTH)
    width, act = ds.observations.shape[1], ds.actions.shape[1]
    if width not in ant.OBS_WIDTHS or act != 8:
        known = "; ".join(f"{w}: {d}" for w, d in ant.OBS_WIDTHS.items())
        raise DatasetError(f"{path}: observations of width {width} and actions of width {act} are not an Ant "
                           f"dataset's (observation widths: {known}; 8 actions); pass an Ant file")
    if width != ant.STATE_DIM:
        ds = ds.select_state(np.arange(ant.STATE_DIM))
        ds.meta = {**ds.meta, "state_columns": f"first {ant.STATE_DIM} of {width} ({ant.OBS_WIDTHS[width]})"}
    return ds
