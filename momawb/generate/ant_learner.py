"""The learner behind the Ant datasets (`momawb.generate.ant` explains what it makes and why):
Stable-Baselines3 PPO on `MarkovForwardAnt` envs, its snapshots and recorded episodes on disk,
and a snapshot acting as a batched policy. Functions take an `AntDatasetConfig` (its learner
fields: ``learner_steps``, ``n_envs``, ``ppo``, ``checkpoint_every``, ``seed``).
"""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import torch
from tqdm.auto import tqdm

from momawb.domains import ant
from momawb.runs import config_hash, one_cpu_thread, outputs_root
from momawb.safe_files import atomic_write_bytes

__all__ = ["MarkovForwardAnt", "SnapshotPolicy", "episodes_to_arrays", "policy_episodes", "train_learner"]


# ------------------------------------------------------------------------------------------ envs
class MarkovForwardAnt(gym.Wrapper):
    """Ant-v5 (27-d observation) whose forward reward starts from the torso of the state acted on
    (``mj_kinematics`` before the step), as `momawb.domains.ant.AntMultiAgentEnv` with
    ``forward_from="qpos"``; actions are clipped to [-1, 1]. With a ``recorder``
    list, every finished episode is appended to it as a dict of arrays (`episodes_to_arrays`)."""

    def __init__(self, recorder: list | None = None):
        super().__init__(gym.make(ant.GYM_ID, **ant.GYM_KWARGS, max_episode_steps=ant.EPISODE_LENGTH))
        self.recorder, self._ep = recorder, None

    def _sim(self):
        d = self.env.unwrapped.data
        return d.qpos.copy(), d.qvel.copy()

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        q, v = self._sim()
        self._ep = {"qpos": [q], "qvel": [v], "actions": [], "rewards": []}
        return obs, info

    def step(self, action):
        u = self.env.unwrapped
        mujoco.mj_kinematics(u.model, u.data)
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._ep is not None:
            q, v = self._sim()
            ep = self._ep
            ep["qpos"].append(q), ep["qvel"].append(v), ep["actions"].append(action), ep["rewards"].append(reward)
            if (terminated or truncated) and self.recorder is not None:
                self.recorder.append(_pack(ep, terminated))
        return obs, reward, terminated, truncated, info


def _pack(ep: dict, terminated: bool) -> dict:
    return {"qpos": np.asarray(ep["qpos"], np.float64), "qvel": np.asarray(ep["qvel"], np.float64),
            "actions": np.asarray(ep["actions"], np.float32), "rewards": np.asarray(ep["rewards"], np.float64),
            "terminated": bool(terminated)}


def episodes_to_arrays(episodes: list[dict]) -> dict:
    """Episodes (qpos (T+1, 15), qvel (T+1, 14), actions (T, 8), rewards (T,), terminated) ->
    flat D4RL-style arrays: observations/next_observations (N, 27), actions, rewards, terminals,
    timeouts (the last step of an episode that was not terminal), qpos, qvel (of the state acted on)."""
    parts = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts",
                             "qpos", "qvel")}
    for ep in episodes:
        s = np.concatenate([ep["qpos"][:, 2:], ep["qvel"]], 1)
        T = len(ep["actions"])
        end = np.zeros(T, bool)
        end[-1] = True
        parts["observations"].append(s[:-1]), parts["next_observations"].append(s[1:])
        parts["actions"].append(ep["actions"]), parts["rewards"].append(ep["rewards"])
        parts["terminals"].append(end & ep["terminated"]), parts["timeouts"].append(end & (not ep["terminated"]))
        parts["qpos"].append(ep["qpos"][:-1]), parts["qvel"].append(ep["qvel"][:-1])
    return {k: np.concatenate(v) for k, v in parts.items()}


def _save_episodes(path: Path, episodes: list[dict]) -> None:
    buf = io.BytesIO()
    lengths = np.array([len(e["actions"]) for e in episodes], np.int64)
    cat = {k: np.concatenate([e[k] for e in episodes]) if episodes else np.zeros(0) for k in
           ("qpos", "qvel", "actions", "rewards")}
    np.savez(buf, lengths=lengths, terminated=np.array([e["terminated"] for e in episodes], bool), **cat)
    atomic_write_bytes(path, buf.getvalue())


def _load_episodes(path: Path) -> list[dict]:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}          # each z[k] reads the file again: read once
    lengths, term = arrays["lengths"], arrays["terminated"]
    if not len(lengths):
        return []
    a0 = np.concatenate([[0], np.cumsum(lengths)])
    s0 = np.concatenate([[0], np.cumsum(lengths + 1)])
    return [{"qpos": arrays["qpos"][s0[i]:s0[i + 1]], "qvel": arrays["qvel"][s0[i]:s0[i + 1]],
             "actions": arrays["actions"][a0[i]:a0[i + 1]], "rewards": arrays["rewards"][a0[i]:a0[i + 1]],
             "terminated": bool(term[i])} for i in range(len(lengths))]


# --------------------------------------------------------------------------------------- learner
def _learner_dir(config, root) -> Path:
    return outputs_root(root) / "runs" / "ant-learner" / config_hash(config.learner_key())


def _snapshots(folder: Path) -> list[int]:
    """Env steps of the complete snapshots (policy, statistics and episodes all written)."""
    steps = (int(p.stem.split("-")[1]) for p in folder.glob("snapshot-*.zip"))
    return sorted(k for k in steps if (folder / f"obs_rms-{k}.npz").exists() and (folder / f"replay-{k}.npz").exists())


def train_learner(config, root=None, progress: bool = True, log=print) -> Path:
    """Train (or resume, or reuse) the PPO learner; returns its folder (module docstring).
    The learner folder is keyed by the learner fields only, so all four datasets share it."""
    folder = _learner_dir(config, root)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.learner_key(), indent=1, default=str))
    done = _snapshots(folder)
    if done and done[-1] >= config.learner_steps:
        return folder
    with one_cpu_thread():            # 64 x 64 nets, batch 256: one thread is fastest and shares the cores
        return _train(config, folder, done, progress, log)


def _train(config, folder: Path, done: list[int], progress: bool, log) -> Path:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    recorder: list[dict] = []
    torch.manual_seed(config.seed)
    venv = DummyVecEnv([lambda: MarkovForwardAnt(recorder) for _ in range(config.n_envs)])
    venv.seed(config.seed + (done[-1] if done else 0))
    venv = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=config.ppo.get("gamma", 0.99))
    if done:
        last = done[-1]
        model = PPO.load(folder / f"snapshot-{last}.zip", env=venv, device="cpu")
        with np.load(folder / f"obs_rms-{last}.npz") as z:
            venv.obs_rms.mean, venv.obs_rms.var, venv.obs_rms.count = z["mean"], z["var"], float(z["count"])
            venv.ret_rms.mean, venv.ret_rms.var, venv.ret_rms.count = z["ret_mean"], z["ret_var"], float(z["ret_count"])
        if log:
            log(f"ant learner: resuming from its snapshot at {last:,} env steps ({folder})")
    else:
        model = PPO("MlpPolicy", venv, seed=config.seed, device="cpu", verbose=0, **config.ppo)
        _snapshot(folder, model, venv, recorder, 0)     # the randomly initialised policy (random dataset)

    # a logger with no outputs: SB3's default makes an empty SB3-<date> folder in the system temp folder per learn()
    model.set_logger(Logger(folder=None, output_formats=[]))

    class Snapshots(BaseCallback):
        def __init__(self):
            super().__init__()
            self.bar = tqdm(total=config.learner_steps, initial=model.num_timesteps, desc="ant learner (env steps)",
                            disable=not progress, unit_scale=True)
            self.next = (model.num_timesteps // config.checkpoint_every + 1) * config.checkpoint_every

        def _on_step(self) -> bool:
            self.bar.update(config.n_envs)
            if self.num_timesteps >= min(self.next, config.learner_steps):
                ret = _snapshot(folder, model, venv, recorder, self.num_timesteps)
                self.next += config.checkpoint_every
                self.bar.set_postfix(episode_return=f"{ret:.0f}")
            return self.num_timesteps < config.learner_steps

    t0 = time.perf_counter()
    remaining = config.learner_steps - model.num_timesteps
    cb = Snapshots()
    model.learn(total_timesteps=remaining, callback=cb, reset_num_timesteps=False)
    cb.bar.close()
    if _snapshots(folder)[-1] < config.learner_steps:      # learn() stops at a rollout boundary
        _snapshot(folder, model, venv, recorder, max(model.num_timesteps, config.learner_steps))
    wall = time.perf_counter() - t0
    stats = json.loads((folder / "learner.json").read_text()) if (folder / "learner.json").exists() else {}
    stats.setdefault("sessions", []).append({"wall_s": wall, "env_steps": remaining,   # a killed session is not listed
                                             "env_steps_per_s": remaining / max(wall, 1e-9),
                                             "resumed_from_env_steps": int(done[-1]) if done else None})
    (folder / "learner.json").write_text(json.dumps(stats, indent=1))
    venv.close()
    return folder


def _snapshot(folder: Path, model, venv, recorder: list, steps: int) -> float:
    """Episodes first, then statistics, then the policy: a snapshot counts once all three exist.
    Returns the mean return of the episodes flushed (nan when none ended)."""
    ret = float(np.mean([e["rewards"].sum() for e in recorder])) if recorder else float("nan")
    _save_episodes(folder / f"replay-{steps}.npz", recorder)
    recorder.clear()
    buf = io.BytesIO()
    np.savez(buf, mean=venv.obs_rms.mean, var=venv.obs_rms.var, count=venv.obs_rms.count, ret_mean=venv.ret_rms.mean,
             ret_var=venv.ret_rms.var, ret_count=venv.ret_rms.count, clip=venv.clip_obs, eps=venv.epsilon)
    atomic_write_bytes(folder / f"obs_rms-{steps}.npz", buf.getvalue())
    tmp = folder / f".snapshot-{steps}.zip"
    model.save(tmp)
    tmp.replace(folder / f"snapshot-{steps}.zip")
    return ret


# ---------------------------------------------------------------------------------- acting, data
class SnapshotPolicy:
    """A learner snapshot as a batched policy: states (B, 27) -> joint actions (B, 8) in [-1, 1]
    (observations normalised with the snapshot's VecNormalize statistics)."""

    def __init__(self, folder: Path, steps: int):
        from stable_baselines3 import PPO
        self.model = PPO.load(folder / f"snapshot-{steps}.zip", device="cpu")
        with np.load(folder / f"obs_rms-{steps}.npz") as z:
            self.mean, self.std = z["mean"], np.sqrt(z["var"] + float(z["eps"]))
            self.clip = float(z["clip"])

    def __call__(self, states: np.ndarray, deterministic: bool) -> np.ndarray:
        obs = np.clip((states - self.mean) / self.std, -self.clip, self.clip).astype(np.float32)
        actions, _ = self.model.policy.predict(obs, deterministic=deterministic)
        return np.clip(actions, -1.0, 1.0)


@one_cpu_thread()
def policy_episodes(policy, n_episodes: int, seed: int, deterministic: bool) -> list[dict]:
    """``n_episodes`` full episodes of ``policy`` in lockstep (`MarkovForwardAnt` envs seeded
    ``seed + i``); the Gaussian's samples come from a torch generator seeded by ``seed``, so a
    batch is reproducible whatever ran before. Returns episode dicts (`episodes_to_arrays`)."""
    episodes: list[dict] = []
    envs = [MarkovForwardAnt(episodes) for _ in range(n_episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    live = np.ones(n_episodes, bool)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        while live.any():
            idx = np.flatnonzero(live)
            actions = policy(obs[idx], deterministic)
            for j, i in enumerate(idx):
                obs[i], _, term, trunc, _ = envs[i].step(actions[j])
                live[i] = not (term or trunc)
    for env in envs:
        env.close()
    return episodes
