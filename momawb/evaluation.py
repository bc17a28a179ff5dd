"""Greedy evaluation of a team in the real environment, normalised scores, mean +- s.e.

Every learner in momawb exposes a `Team`: decentralised per-agent policies that map each
agent's current observation (and, with memory, its last L (o, a) pairs) to an action. The
evaluator runs ``episodes`` real episodes *in lockstep* (one batched policy forward per step
for all episodes and agents), with each agent's input built by the domain's observation
function from the env's global state, exactly as in training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from momawb.runs import one_cpu_thread

__all__ = ["Team", "EvalResult", "evaluate", "mean_se", "team_device", "MixedTeam", "swap_agent"]


class Team(Protocol):
    """What `evaluate` needs from a trained team.

    ``memory_length``: L (0 = no memory). ``act(obs, history, greedy)``: obs (B, N, obs_dim),
    history (B, N, L, F) or None, returns actions (B, N, act_dim) (discrete: index as float).
    """

    memory_length: int

    def act(self, obs: torch.Tensor, history: torch.Tensor | None, greedy: bool = True) -> torch.Tensor: ...


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (sample std with n-1, over sqrt(n)); s.e. 0 for one value."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_se of an empty list")
    if v.size == 1:
        return float(v[0]), 0.0
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))


@dataclass
class EvalResult:
    returns: np.ndarray            # (E,) episode returns
    scores: np.ndarray             # (E,) normalised scores
    lengths: np.ndarray            # (E,)
    trajectories: dict = field(default_factory=dict)  # when record=True: states, actions, rewards (E, T, ...)

    @property
    def score(self) -> float:
        """Mean normalised score over episodes (one seed's number in the paper's tables)."""
        return float(self.scores.mean())

    def summary(self) -> dict[str, float]:
        return {"score": self.score, "return": float(self.returns.mean()),
                "length": float(self.lengths.mean())}


def team_device(team: Any) -> torch.device:
    """The device of a team's networks: its parameters', or those of the teams it wraps
    (``team``/``teams`` attributes, e.g. a mirrored or mixed team); CPU when it has none."""
    params = getattr(team, "parameters", None)
    p = next(params(), None) if callable(params) else None
    if p is not None:
        return p.device
    inner = [getattr(team, "team", None), *getattr(team, "teams", ())]
    for t in inner:
        if t is not None:
            return team_device(t)
    return torch.device("cpu")


class MixedTeam:
    """Agent i acts as agent i of ``teams[i]``, each from its own observation and history.

    E.g. the shoulder of a CCW Reacher expert with the elbow of a CW one (mis-coordinated by
    construction, the offline failure mode), or a trained Ant team with one leg replaced by the
    dataset's behaviour-cloned policy (`swap_agent`). Teams may differ in memory length: the
    mixed team keeps the longest history and hands each team its last ``memory_length`` steps
    (the history rows are the domain's (o, a) pairs, the same for every team). A team that
    serves several agents is run once per step.
    """

    def __init__(self, *teams):
        self.teams = teams
        self.memory_length = max(int(getattr(t, "memory_length", 0) or 0) for t in teams)

    def act(self, obs, history=None, greedy=True):
        import torch
        out: dict[int, torch.Tensor] = {}
        for t in self.teams:
            if id(t) not in out:
                L = int(getattr(t, "memory_length", 0) or 0)
                h = history[..., history.shape[-2] - L:, :] if L and history is not None else None
                out[id(t)] = t.act(obs, h, greedy).to(obs.device)
        return torch.stack([out[id(t)][:, i] for i, t in enumerate(self.teams)], 1)


def swap_agent(team: Any, partner: Any, agent: int, n_agents: int) -> MixedTeam:
    """``team`` with agent ``agent`` replaced by that agent of ``partner`` (e.g. the dataset's
    behaviour-cloned policy of one leg: the cost of a mis-adapted partner)."""
    if not 0 <= agent < n_agents:
        raise ValueError(f"agent must be in [0, {n_agents}), got {agent}")
    return MixedTeam(*[partner if i == agent else team for i in range(n_agents)])


def _to_np(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


@one_cpu_thread()
@torch.no_grad()
def evaluate(team: Team, domain, episodes: int = 100, seed: int = 10_101, greedy: bool = True,
             device: torch.device | str | None = None, record: bool = False,
             env_kwargs: dict | None = None,
             on_step: Callable[[int, np.ndarray, np.ndarray, list], None] | None = None) -> EvalResult:
    """Run ``episodes`` real episodes of ``team`` in ``domain`` (greedy by default).

    Env e is reset with seed ``seed + e``, so two evaluations with the same seed see the same
    start states. ``on_step(t, states, actions, infos)`` sees every lockstep step.
    ``record=True`` keeps (E, T, ...) arrays ``states``, ``actions``, ``rewards``, ``alive`` (zeros
    after an episode ended) and, for envs with ``sim_state()`` (MuJoCo domains), the simulator
    state ``qpos``/``qvel`` before each step (frames and foot contacts are rebuilt from them).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    device = torch.device(device) if device is not None else team_device(team)
    envs = [domain.make_env(**(env_kwargs or {})) for _ in range(episodes)]
    for e, env in enumerate(envs):
        env.reset(seed=seed + e)
    n, L = domain.n_agents, int(getattr(team, "memory_length", 0) or 0)
    feat_dim = domain.obs_dim + (domain.n_actions if domain.discrete else domain.act_dim)
    hist = np.zeros((episodes, n, L, feat_dim), np.float32) if L else None
    alive = np.ones(episodes, bool)
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, np.int64)
    traj: dict[str, list] = {"states": [], "actions": [], "rewards": [], "alive": []}
    sim = record and hasattr(envs[0], "sim_state")
    if sim:
        traj.update(qpos=[], qvel=[])
    t = 0
    while alive.any():
        idx = np.flatnonzero(alive)
        states = np.stack([envs[e].state() for e in idx]).astype(np.float32)
        if sim:
            sim_states = [envs[e].sim_state() for e in idx]
        obs = domain.observe(states)
        h = torch.as_tensor(hist[idx], device=device) if L else None
        act = _to_np(team.act(torch.as_tensor(obs, device=device), h, greedy))
        if act.shape != (len(idx), n, domain.act_dim):
            raise ValueError(f"team.act returned shape {act.shape}, expected {(len(idx), n, domain.act_dim)}")
        rewards = np.zeros(len(idx))
        infos = []
        for j, e in enumerate(idx):
            env = envs[e]
            agents = list(env.agents)
            a = {ag: (int(act[j, i, 0]) if domain.discrete else act[j, i].astype(np.float32))
                 for i, ag in enumerate(agents)}
            _, rew, term, trunc, info = env.step(a)
            rewards[j] = rew[agents[0]]
            infos.append(info)
            if term[agents[0]] or trunc[agents[0]] or not env.agents:
                alive[e] = False
        returns[idx] += rewards
        lengths[idx] += 1
        if L:
            row = domain.history_row(obs, act)
            hist[idx] = np.concatenate([hist[idx, :, 1:], row[:, :, None]], 2)
        if on_step is not None:
            on_step(t, states, act, infos)
        if record:
            full_s = np.zeros((episodes, domain.state_dim), np.float32)
            full_a = np.zeros((episodes, n, domain.act_dim), np.float32)
            full_r = np.zeros(episodes, np.float32)
            mask = np.zeros(episodes, bool)
            full_s[idx], full_a[idx], full_r[idx], mask[idx] = states, act, rewards, True
            for k, v in zip(("states", "actions", "rewards", "alive"), (full_s, full_a, full_r, mask)):
                traj[k].append(v)
            if sim:
                for j, key in enumerate(("qpos", "qvel")):
                    full = np.zeros((episodes, len(sim_states[0][j])))
                    full[idx] = np.stack([ss[j] for ss in sim_states])
                    traj[key].append(full)
        t += 1
    for env in envs:
        env.close()
    trajectories = {k: np.stack(v, 1) for k, v in traj.items()} if record else {}
    return EvalResult(returns, domain.normalize(returns), lengths, trajectories)
