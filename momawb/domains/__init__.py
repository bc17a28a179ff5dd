"""Domains: the multi-agent tasks, each a PettingZoo ``ParallelEnv`` plus a `Domain` spec.

`Domain` is what the learners see: sizes, the observation functions O^i(s) as one vectorised
gather over global states (the same function builds a dataset's per-agent views, the agents'
inputs inside world-model rollouts and their inputs in the real env), the action encoding of
the world model, reference returns for normalised scores, and ``make_env``.

``make("game")``, ``make("reacher", observation="independent")``, ...
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["Domain", "SimStep", "make", "DOMAINS"]


@dataclass
class SimStep:
    """One batched step of a ground-truth simulator restarted from dataset states.

    A simulator (``domain.simulator()``) has ``step(states (B, S), actions (B, N, act_dim),
    qpos=None, qvel=None) -> SimStep``; MuJoCo domains need qpos/qvel to restart exactly.
    """

    next_states: np.ndarray            # (B, S)
    rewards: np.ndarray                # (B,)
    terminals: np.ndarray              # (B,) bool
    qpos: np.ndarray | None = None     # (B, nq) after the step (MuJoCo domains)
    qvel: np.ndarray | None = None

#: name -> "module:factory"
DOMAINS = {
    "game": "momawb.domains.game:make_domain",
    "reacher": "momawb.domains.reacher:make_domain",
    "ant": "momawb.domains.ant:make_domain",
}


@dataclass
class Domain:
    """Static description of a cooperative multi-agent task (shapes use B = any leading dims).

    ``obs_index[i, j]`` is the state coordinate agent i sees in slot j (-1 = zero padding), so
    ``observe(s)[..., i, j] = s[..., obs_index[i, j]]``. Per-agent observations are padded to
    ``obs_dim = max_i obs_dims[i]`` so agents can be stacked into one batched network.

    ``action_index[i, j]`` (optional, (N, act_dim) int) is the column of the dataset's joint
    action that holds agent i's j-th action, so ``split_actions(a)[..., i, j] = a[..., action_index[i, j]]``
    and `join_actions` is its inverse. None (the default) means agent-major order, the identity
    (Game, Reacher); Ant's joint action is Ant-v5's actuator order, a permutation of the agents.
    """

    name: str
    task: str
    n_agents: int
    state_dim: int
    obs_index: np.ndarray              # (N, obs_dim) int, -1 = padding
    act_dim: int                       # per agent: action dims (continuous) or 1 (discrete)
    n_actions: int | None              # categories per agent (discrete), None if continuous
    episode_length: int                # truncation (timeout) length of the real env
    reference_returns: tuple[float, float]  # (random, expert) episode returns for normalisation
    env_factory: Any = field(repr=False, default=None)  # (seed, **kw) -> ParallelEnv
    simulator_factory: Any = field(repr=False, default=None)  # ground-truth restartable sim, or None
    info: dict = field(default_factory=dict)
    action_index: np.ndarray | None = None  # (N, act_dim) int: dataset column of agent i's j-th action

    def __post_init__(self) -> None:
        self.obs_index = np.asarray(self.obs_index, dtype=np.int64)
        if self.obs_index.shape[0] != self.n_agents:
            raise ValueError(f"obs_index has {self.obs_index.shape[0]} rows for {self.n_agents} agents")
        if self.obs_index.max() >= self.state_dim:
            raise ValueError("obs_index points past the state")
        self._torch_index: dict = {}
        self._join_index = None
        if self.action_index is not None:
            idx = np.asarray(self.action_index, dtype=np.int64)
            width = self.n_agents * self.act_dim
            if idx.shape != (self.n_agents, self.act_dim) or sorted(idx.ravel().tolist()) != list(range(width)):
                raise ValueError(f"action_index must be an ({self.n_agents}, {self.act_dim}) permutation of the "
                                 f"joint action's columns 0..{width - 1}, got {idx.tolist()}")
            self.action_index = idx
            self._join_index = np.argsort(idx.ravel())   # joint[c] = per-agent flat[_join_index[c]]

    # ------------------------------------------------------------------ sizes
    @property
    def discrete(self) -> bool:
        return self.n_actions is not None

    @property
    def obs_dim(self) -> int:
        return int(self.obs_index.shape[1])

    @property
    def obs_dims(self) -> tuple[int, ...]:
        return tuple(int(n) for n in (self.obs_index >= 0).sum(1))

    @property
    def joint_action_dim(self) -> int:
        """Width of the dataset's joint action (indices for discrete domains)."""
        return self.n_agents * self.act_dim

    @property
    def model_action_dim(self) -> int:
        """Width of the action input of the world model (one-hot for discrete domains)."""
        return self.n_agents * (self.n_actions if self.discrete else self.act_dim)

    @property
    def agents(self) -> list[str]:
        return [f"agent_{i}" for i in range(self.n_agents)]

    # ------------------------------------------------------------------ observation functions
    def observe(self, states):
        """O^i(s) for every agent: (B..., S) -> (B..., N, obs_dim), numpy or torch."""
        if isinstance(states, torch.Tensor):
            key = states.device
            if key not in self._torch_index:
                idx = torch.as_tensor(self.obs_index, device=states.device)
                self._torch_index[key] = (idx.clamp(min=0), idx >= 0)
            idx, mask = self._torch_index[key]
            out = states[..., idx]                     # (B..., N, obs_dim)
            return out * mask.to(states.dtype)
        states = np.asarray(states)
        out = states[..., np.maximum(self.obs_index, 0)]
        return np.where(self.obs_index >= 0, out, 0).astype(states.dtype, copy=False)

    # ------------------------------------------------------------------ actions
    def _index(self, name: str, like):
        """``action_index`` (split) or its inverse (join) as numpy, or as a cached tensor on ``like``'s device."""
        idx = self.action_index if name == "split" else self._join_index
        if not isinstance(like, torch.Tensor):
            return idx
        key = (name, like.device)
        if key not in self._torch_index:
            self._torch_index[key] = torch.as_tensor(idx, device=like.device)
        return self._torch_index[key]

    def split_actions(self, joint):
        """Dataset joint action (B..., N*act_dim) -> per agent (B..., N, act_dim), numpy or torch."""
        if self.action_index is None:
            return joint.reshape(*joint.shape[:-1], self.n_agents, self.act_dim)
        return joint[..., self._index("split", joint)]

    def join_actions(self, per_agent):
        """Per agent (B..., N, act_dim) -> dataset joint action (B..., N*act_dim); inverse of `split_actions`."""
        flat = per_agent.reshape(*per_agent.shape[:-2], self.n_agents * self.act_dim)
        return flat if self.action_index is None else flat[..., self._index("join", flat)]

    def action_features(self, per_agent):
        """The action part of an agent's history row, (B..., N, act_dim) -> (B..., N, A_feat):
        one-hot (discrete) or the action itself; numpy or torch, in float32 / the input's dtype."""
        if isinstance(per_agent, torch.Tensor):
            if self.discrete:
                return torch.nn.functional.one_hot(per_agent[..., 0].long(), self.n_actions).to(torch.float32)
            return per_agent
        per_agent = np.asarray(per_agent)
        if self.discrete:
            return np.eye(self.n_actions, dtype=np.float32)[per_agent[..., 0].astype(np.int64)]
        return per_agent.astype(np.float32, copy=False)

    def history_row(self, obs, per_agent):
        """The (o, a) pair appended to each agent's history: (B..., N, O) + actions -> (B..., N, F)."""
        feat = self.action_features(per_agent)
        if isinstance(obs, torch.Tensor):
            return torch.cat([obs, feat.to(obs.dtype)], -1)
        return np.concatenate([obs, feat.astype(obs.dtype, copy=False)], -1)

    def encode_actions(self, per_agent: torch.Tensor) -> torch.Tensor:
        """World-model action input: one-hot per agent (discrete) or the raw actions, joined."""
        if self.discrete:
            onehot = torch.nn.functional.one_hot(per_agent[..., 0].long(), self.n_actions)
            return onehot.to(torch.float32).flatten(-2)
        return self.join_actions(per_agent)

    # ------------------------------------------------------------------ scores and envs
    def normalize(self, returns):
        """Normalised score (R - R_random) / (R_expert - R_random) (PAPER.md section 7)."""
        lo, hi = self.reference_returns
        return (np.asarray(returns, dtype=np.float64) - lo) / (hi - lo)

    def for_dataset(self, dataset) -> "Domain":
        """This domain normalising with the reference returns ``dataset`` carries in its metadata
        (``reference_returns``: {"random", "expert"}; e.g. the measured ones of a generated Ant
        dataset), or itself when it carries none (a real D4RL file: the domain's defaults).
        Raises ValueError when the two references are equal or not numbers."""
        refs = (getattr(dataset, "meta", None) or {}).get("reference_returns")
        if not isinstance(refs, dict) or "random" not in refs or "expert" not in refs:
            return self
        try:
            lo, hi = float(refs["random"]), float(refs["expert"])
        except (TypeError, ValueError):
            raise ValueError(f"{getattr(dataset, 'source', 'the dataset')}: reference_returns {refs!r} are not "
                             "numbers") from None
        if not np.isfinite([lo, hi]).all() or lo == hi:
            raise ValueError(f"{getattr(dataset, 'source', 'the dataset')}: reference returns random={lo}, "
                             f"expert={hi} cannot normalise scores (they must be finite and differ)")
        if (lo, hi) == tuple(self.reference_returns):
            return self
        return dataclasses.replace(self, reference_returns=(lo, hi))

    def make_env(self, seed: int | None = None, **kwargs: Any):
        """A fresh PettingZoo ``ParallelEnv`` of this task."""
        return self.env_factory(seed=seed, **kwargs)

    @property
    def has_simulator(self) -> bool:
        return self.simulator_factory is not None

    def simulator(self, **kwargs: Any):
        """A batched ground-truth simulator restartable from dataset states (Table 5)."""
        if self.simulator_factory is None:
            raise ValueError(f"domain {self.name!r} has no ground-truth simulator")
        return self.simulator_factory(**kwargs)


def make(name: str, **kwargs: Any) -> Domain:
    """The `Domain` called ``name`` ('game', 'reacher', 'ant') with task options ``kwargs``."""
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; known: {', '.join(DOMAINS)}")
    mod, fn = DOMAINS[name].split(":")
    return getattr(importlib.import_module(mod), fn)(**kwargs)
