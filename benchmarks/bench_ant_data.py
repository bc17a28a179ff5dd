"""Ant data generation: the learner's env steps/s against stepping its envs alone, the memory of
a 1M-transition dataset with its per-agent views and history index, and the wall time of every
cached Ant dataset under outputs/datasets/ (from its metadata).

Prints numbers and ratios, asserts nothing (about 30 s): ``python benchmarks/bench_ant_data.py``.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from momawb import domains
from momawb.datasets import Dataset
from momawb.generate import ant as gen_ant
from momawb.runs import outputs_root

STEPS = 16_384         # learner env steps timed (two PPO rollouts of 8 x 1024)
N = 1_000_000          # transitions of the memory measurement (D4RL's dataset size)


def learner_rate() -> tuple[float, float]:
    """(PPO env steps/s, env-only steps/s) with the generator's default learner settings."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
    torch.set_num_threads(1)
    cfg = gen_ant.AntDatasetConfig()
    venv = VecNormalize(DummyVecEnv([lambda: gen_ant.MarkovForwardAnt() for _ in range(cfg.n_envs)]))
    venv.seed(0)
    venv.reset()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(STEPS // cfg.n_envs):
        venv.step(rng.uniform(-1, 1, (cfg.n_envs, 8)).astype(np.float32))
    env_only = STEPS / (time.perf_counter() - t0)
    model = PPO("MlpPolicy", venv, seed=0, device="cpu", **cfg.ppo)
    t0 = time.perf_counter()
    model.learn(STEPS)
    return STEPS / (time.perf_counter() - t0), env_only


def dataset_memory() -> dict[str, float]:
    """GB of a 1M-transition Ant dataset (as generated: float32 states, float64 qpos/qvel) and of
    its po agent views with a 10-step history index."""
    rng = np.random.default_rng(0)
    s = rng.normal(size=(N, 27)).astype(np.float32)
    timeouts = np.zeros(N, bool)
    timeouts[999::1000] = True
    ds = Dataset(s, rng.uniform(-1, 1, (N, 8)).astype(np.float32), np.ones(N, np.float32), np.roll(s, -1, 0),
                 np.zeros(N, bool), timeouts, np.zeros((N, 15)), np.zeros((N, 14)))
    base = sum(a.nbytes for a in (ds.observations, ds.actions, ds.rewards, ds.next_observations, ds.terminals,
                                  ds.timeouts, ds.qpos, ds.qvel))
    out = {"dataset": base / 1e9}
    for task in ("fo", "po"):
        v = ds.agent_views(domains.make("ant", observation=task), history_length=10)
        out[f"{task} views + history index"] = sum(a.nbytes for a in (v.obs, v.next_obs, v.actions, v.features,
                                                                      v.hist_index)) / 1e9
    return out


def main() -> None:
    ppo, env_only = learner_rate()
    print(f"learner (SB3 PPO, 8 envs, 1 thread): {ppo:,.0f} env steps/s; its envs alone with random actions "
          f"{env_only:,.0f} steps/s; PPO / env-only = {ppo / env_only:.2f}")
    mem = dataset_memory()
    print("memory of a 1M-transition Ant dataset: " + ", ".join(f"{k} {v:.2f} GB" for k, v in mem.items()))
    for path in sorted((outputs_root() / "datasets").glob("ant-*.hdf5")):
        ds = Dataset.load(path)
        gen = ds.meta.get("generator_config", {})
        print(f"{path.name}: {len(ds):,} transitions, learner {gen.get('learner_steps', '?'):,} steps, made in "
              f"{ds.meta.get('generation_wall_s', float('nan')) / 60:.1f} min (learner sessions: "
              f"{[round(s['wall_s'] / 60, 1) for s in ds.meta.get('learner', {}).get('sessions', [])]} min)")


if __name__ == "__main__":
    main()
