"""Pieces every model-free baseline shares (PAPER.md section 5), written once.

* `BaselineConfig`: the common fields (PAPER.md section 5 "Common"), same names everywhere;
* `Batch`, `ReplaySampler`, `OnlineBuffer`: replay sampling of (global state, per-agent
  observations, actions, reward, terminal, 10-step histories) from a dataset's `AgentViews`,
  gathered on the device through the precomputed history index (never materialised);
* `centralize`: the single-agent view of a batch (all observations concatenated, the joint
  action) used by centralised IQL;
* `AgentCritic`: C critics x N agents in one stacked MLP, like the world model's ensemble;
  discrete domains get one Q value per action, continuous ones take (x, a) as input;
* `TanhPolicy`: deterministic tanh policies, stacked over agents (TD3+BC, CQL, OMAR);
* `AgentTeam`, `CentralTeam`: the `evaluation.Team` of decentralised and centralised learners;
* `Learner`: checkpointing (networks, targets, optimisers, counter) for every algorithm;
* `build_encoder`, `adam`, `fit`: the memory module of section 4 (shared by every network of
  an agent, Polyak-averaged target copy), optimisers, and the loop through `loop.train_loop`
  with periodic greedy evaluation.

Shapes: per-agent tensors are ``(B..., N, D)``; critic outputs ``(C, B..., N)``.
Actions of continuous domains are assumed to lie in ``[-max_action, max_action]``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from momawb import precision
from momawb.config import Config, param
from momawb.evaluation import evaluate
from momawb.nets import AgentEncoder, AgentMLP, NormalizedEncoder, RunningNorm, StackedMLP
from momawb.loop import train_loop
from momawb.runs import Run

__all__ = ["BaselineConfig", "Batch", "ReplaySampler", "OnlineBuffer", "centralize", "joint_index",
           "split_joint_index", "AgentCritic", "TanhPolicy", "AgentTeam", "CentralTeam", "build_encoder", "state_norm",
           "adam", "Learner", "fit", "require_continuous",
           "EVAL_SEED"]

EVAL_SEED = 10_101  # evaluation episodes during training use env seeds EVAL_SEED + run.seed + e


@dataclass
class BaselineConfig(Config):
    """Fields every baseline shares (PAPER.md section 5 "Common", section 4 memory)."""

    # data and memory (PAPER.md section 4)
    memory: bool = param(False, "attention memory over the last L (o, a) pairs (partial observability)")
    memory_length: int = param(10, "L, history length of the memory module (paper 10)", ge=1)
    memory_lr: float = param(1e-4, "Adam lr of the memory module (paper 1e-4, official code 3e-4)", gt=0)
    # networks
    hidden: tuple[int, ...] = param((256, 256), "hidden widths of every MLP (paper 2 x 256)", ge=1)
    # optimisation
    steps: int = param(1_000_000, "gradient steps (paper 1e6)", ge=1)
    batch_size: int = param(256, "minibatch size (paper 256)", ge=1)
    lr: float = param(3e-4, "Adam learning rate of every network but the memory (paper 3e-4)", gt=0)
    gamma: float = param(0.99, "discount gamma (paper 0.99)", ge=0, le=1)
    tau: float = param(0.005, "Polyak rate of target networks (paper 0.005)", gt=0, le=1)
    # evaluation, logging, checkpoints
    eval_every: int = param(5000, "greedy evaluation every this many steps (paper 5000; 0 = off)", ge=0)
    eval_episodes: int = param(10, "episodes per evaluation during training (paper 10)", ge=1)
    log_every: int = param(1000, "log training metrics every this many steps", ge=1)
    checkpoint_every: int = param(10_000, "checkpoint every this many steps", ge=1)
    device: str = param("auto", "'auto' (CUDA when available), 'cpu' or 'cuda[:i]'")


def require_continuous(domain, method: str) -> None:
    if domain.discrete:
        raise ValueError(f"{method} needs continuous actions (deterministic tanh policies), but domain "
                         f"{domain.name}/{domain.task} has {domain.n_actions} discrete actions per agent; "
                         "use iql, maiql or ibc on discrete domains")


# ---------------------------------------------------------------------------- replay sampling
@dataclass
class Batch:
    """A minibatch of transitions; B = batch, N = agents, L = memory length, F = o + a width."""

    states: torch.Tensor          # (B, S)     global state s_t (centralised critics and mixers)
    next_states: torch.Tensor     # (B, S)
    obs: torch.Tensor             # (B, N, O)  o_t^i = O^i(s_t)
    next_obs: torch.Tensor        # (B, N, O)
    actions: torch.Tensor         # (B, N, A)  discrete: the index as a float, A = 1
    rewards: torch.Tensor         # (B,)       team reward
    terminals: torch.Tensor       # (B,)       1.0 where s_{t+1} is absorbing (timeouts bootstrap)
    hist: torch.Tensor | None = None       # (B, N, L, F) last L (o, a) pairs before t
    next_hist: torch.Tensor | None = None  # (B, N, L, F) the window slid by (o_t, a_t)

    def __len__(self) -> int:
        return len(self.rewards)

    def __getitem__(self, i) -> "Batch":
        """The rows ``i`` (index array or boolean mask) of every field."""
        return Batch(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[i])
                        for f in fields(Batch)})

    @staticmethod
    def cat(parts: Iterable["Batch"]) -> "Batch":
        parts = list(parts)
        out = {}
        for f in fields(Batch):
            vals = [getattr(p, f.name) for p in parts]
            out[f.name] = None if vals[0] is None else torch.cat(vals, 0)
        return Batch(**out)


class ReplaySampler:
    """Uniform minibatches of a dataset, on the device, indices drawn from ``rng`` (the run's
    numpy Generator, so a resumed run draws the same batches)."""

    def __init__(self, dataset, domain, device: torch.device, rng: np.random.Generator,
                 memory: bool = False, memory_length: int = 10):
        views = dataset.agent_views(domain, memory_length)
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)
        self.states, self.next_states = t(dataset.observations), t(dataset.next_observations)
        self.obs, self.next_obs, self.actions = t(views.obs), t(views.next_obs), t(views.actions)
        self.rewards, self.terminals = t(dataset.rewards), t(dataset.terminals)
        self.memory = memory
        if memory:
            self.features = t(views.features)                         # (N+1, n, F), row N = zeros
            self.hist_index = torch.as_tensor(views.hist_index, device=device)  # (N, L), -1 -> row N
        self.qpos, self.qvel = dataset.qpos, dataset.qvel
        self.rng, self.device, self.n = rng, device, len(dataset)

    def __len__(self) -> int:
        return self.n

    def indices(self, batch_size: int) -> np.ndarray:
        return self.rng.integers(0, self.n, batch_size)

    def sample(self, batch_size: int) -> Batch:
        return self.get(self.indices(batch_size))

    def get(self, idx: np.ndarray) -> Batch:
        i = torch.as_tensor(idx, device=self.device)
        hist = next_hist = None
        if self.memory:
            hist = self.features[self.hist_index[i]].transpose(1, 2)           # (B, n, L, F)
            next_hist = torch.cat([hist[:, :, 1:], self.features[i][:, :, None]], 2)
        return Batch(self.states[i], self.next_states[i], self.obs[i], self.next_obs[i], self.actions[i],
                     self.rewards[i], self.terminals[i], hist, next_hist)


class OnlineBuffer:
    """A growing buffer of transitions (MAIQL-ft's simulator rollouts), saved with the learner."""

    def __init__(self, capacity: int):
        self.capacity, self.size = int(capacity), 0
        self.data: dict[str, torch.Tensor | None] = {}

    def add(self, batch: Batch) -> None:
        room = self.capacity - self.size
        if room <= 0:
            return
        for f in fields(Batch):
            v = getattr(batch, f.name)
            if v is None:
                self.data[f.name] = None
                continue
            v = v[:room]
            if f.name not in self.data or self.data[f.name] is None:
                self.data[f.name] = torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype, device=v.device)
            self.data[f.name][self.size:self.size + len(v)] = v
        self.size += min(room, len(batch))

    def get(self, idx: np.ndarray) -> Batch:
        i = torch.as_tensor(idx, device=next(v for v in self.data.values() if v is not None).device)
        return Batch(**{k: (None if v is None else v[i]) for k, v in self.data.items()})

    def state_dict(self) -> dict:
        return {"size": self.size, "data": {k: (None if v is None else v[:self.size].clone())
                                            for k, v in self.data.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.data = 0, {}
        if state["size"]:
            self.add(Batch(**state["data"]))


# ---------------------------------------------------------------------------- centralised view
def joint_index(actions: torch.Tensor, n_actions: int) -> torch.Tensor:
    """Per-agent indices (B..., N, 1) -> joint index (B...,) in [0, n_actions^N), agent 0 most significant."""
    n = actions.shape[-2]
    base = n_actions ** torch.arange(n - 1, -1, -1, device=actions.device)
    return (actions[..., 0].long() * base).sum(-1)


def split_joint_index(index: torch.Tensor, n_agents: int, n_actions: int) -> torch.Tensor:
    """Joint index (B...,) -> per-agent indices (B..., N, 1) as floats."""
    base = n_actions ** torch.arange(n_agents - 1, -1, -1, device=index.device)
    return ((index.long()[..., None] // base) % n_actions).unsqueeze(-1).float()


def centralize(batch: Batch, domain) -> Batch:
    """One agent that sees every observation and picks the joint action (centralised IQL):
    obs (B, 1, N*O); actions (B, 1, 1) joint index (discrete) or (B, 1, N*A)."""
    if batch.hist is not None:
        raise ValueError("centralised IQL has no memory (the paper reports IQL only under full "
                         "observability); set memory=False")
    flat = lambda o: o.flatten(-2).unsqueeze(-2)
    if domain.discrete:
        act = joint_index(batch.actions, domain.n_actions).float()[:, None, None]
    else:
        act = flat(batch.actions)
    return Batch(batch.states, batch.next_states, flat(batch.obs), flat(batch.next_obs), act,
                 batch.rewards, batch.terminals)


# ---------------------------------------------------------------------------- networks
#: variance floor of dataset standardisation: std >= 1e-3, the sigma + 1e-3 of TD3+BC's code
DATA_NORM_EPS = 1e-6


def build_encoder(domain, config: BaselineConfig, n_agents: int | None = None,
                  obs_dim: int | None = None, obs: torch.Tensor | None = None) -> AgentEncoder:
    """The memory module of PAPER.md section 4 (identity on the observation when memory=False).

    With ``obs`` (the dataset's per-agent observations, (n, N, O)) the observations are first
    standardised by their dataset mean and std (`nets.NormalizedEncoder`, std floored at 1e-3 as
    TD3+BC's (s - mu) / (sigma + 1e-3)); the statistics are buffers, so checkpoints and the team
    carry them. Histories stay raw.
    """
    feat = domain.obs_dim + (domain.n_actions if domain.discrete else domain.act_dim)
    args = (n_agents or domain.n_agents, obs_dim or domain.obs_dim, feat, config.memory, config.memory_length)
    if obs is None:
        return AgentEncoder(*args)
    encoder = NormalizedEncoder(*args, clip=float("inf"), eps=DATA_NORM_EPS).to(obs.device)
    encoder.obs_norm.update(obs)
    return encoder


def state_norm(states: torch.Tensor) -> RunningNorm:
    """A `nets.RunningNorm` holding the dataset mean and std of global states (n, S) (the
    mixers' input under ``obs_norm``)."""
    norm = RunningNorm((states.shape[-1],), eps=DATA_NORM_EPS).to(states.device)
    norm.update(states)
    return norm


class AgentCritic(nn.Module):
    """C critics per agent, all C x N in one `StackedMLP` (members stacked like the world model).

    ``forward(x (B..., N, D), a (B..., N, A)) -> (C, B..., N)``. Discrete (``n_actions`` given):
    the net maps x to one value per action and ``a`` (index) picks it; ``a=None`` returns all
    values ``(C, B..., N, n_actions)``. Continuous: the net maps [x, a] to one value.
    """

    def __init__(self, n_agents: int, in_dim: int, act_dim: int, n_actions: int | None = None,
                 n_critics: int = 2, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        self.n, self.c, self.n_actions = n_agents, n_critics, n_actions
        out = n_actions if n_actions is not None else 1
        self.net = StackedMLP(n_critics * n_agents, in_dim + (0 if n_actions else act_dim), out, hidden)

    def forward(self, x: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_actions is None:
            x = torch.cat([x, a], -1)
        assert x.shape[-2] == self.n, f"critic expects {self.n} agents on axis -2, got {tuple(x.shape)}"
        lead = x.shape[:-2]
        y = x.reshape(-1, self.n, x.shape[-1]).transpose(0, 1).repeat(self.c, 1, 1)   # (C*N, B', D)
        y = self.net(y)                                                                 # (C*N, B', out)
        y = y.reshape(self.c, self.n, -1, y.shape[-1]).transpose(1, 2)                  # (C, B', N, out)
        y = y.reshape(self.c, *lead, self.n, y.shape[-1])
        if self.n_actions is None:
            return y[..., 0]
        if a is None:
            return y
        idx = a[..., 0].long().unsqueeze(-1).expand(self.c, *a.shape[:-1], 1)
        return y.gather(-1, idx)[..., 0]


class TanhPolicy(nn.Module):
    """Deterministic per-agent policies a^i = max_action * tanh(f_i(x^i)), stacked over agents.

    ``sample(x, greedy)`` returns (actions (B..., N, A), zeros (B..., N)) so it plugs into teams.
    """

    def __init__(self, n_agents: int, in_dim: int, act_dim: int, hidden: tuple[int, ...], max_action: float = 1.0):
        super().__init__()
        self.net = AgentMLP(n_agents, in_dim, act_dim, hidden)
        self.max_action = max_action

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.max_action * torch.tanh(self.net(x))

    def sample(self, x: torch.Tensor, greedy: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        a = self(x)
        return a, torch.zeros(a.shape[:-1], device=a.device)


class AgentTeam(nn.Module):
    """Decentralised team: each agent acts from its own observation (and history).

    Continuous actions are clipped to ``[-max_action, max_action]`` (Gaussian means are unbounded).
    """

    def __init__(self, encoder: AgentEncoder, policy: nn.Module, max_action: float | None = 1.0):
        super().__init__()
        self.encoder, self.policy, self.max_action = encoder, policy, max_action

    @property
    def memory_length(self) -> int:
        return self.encoder.length

    @torch.no_grad()
    def act(self, obs: torch.Tensor, history: torch.Tensor | None = None, greedy: bool = True) -> torch.Tensor:
        a = self.policy.sample(self.encoder(obs, history), greedy=greedy)[0]
        if self.max_action is not None and not getattr(self.policy, "discrete", False):
            a = a.clamp(-self.max_action, self.max_action)
        return a


class CentralTeam(nn.Module):
    """Centralised execution (IQL): one policy over all observations outputs the joint action,
    which is split per agent: discrete joint index -> per-agent indices, continuous (N*A) -> (N, A)."""

    memory_length = 0

    def __init__(self, policy: nn.Module, n_agents: int, n_actions: int | None, max_action: float = 1.0):
        super().__init__()
        self.policy, self.n, self.n_actions, self.max_action = policy, n_agents, n_actions, max_action

    @torch.no_grad()
    def act(self, obs: torch.Tensor, history: torch.Tensor | None = None, greedy: bool = True) -> torch.Tensor:
        a = self.policy.sample(obs.flatten(-2).unsqueeze(-2), greedy=greedy)[0][..., 0, :]  # (B, A_joint)
        if self.n_actions is not None:
            return split_joint_index(a[..., 0], self.n, self.n_actions)
        return a.reshape(*a.shape[:-1], self.n, -1).clamp(-self.max_action, self.max_action)


# ---------------------------------------------------------------------------- optimisation
def adam(modules: nn.Module | Iterable[nn.Module], lr: float) -> torch.optim.Adam | None:
    """Adam over the parameters of ``modules`` (None when there are none, e.g. no memory)."""
    mods = [modules] if isinstance(modules, nn.Module) else [m for m in modules if m is not None]
    params = [p for m in mods for p in m.parameters()]
    return precision.adam(params, lr) if params else None


class Learner:
    """Checkpointing shared by every baseline: ``state_dict`` holds the networks of
    ``modules()`` (targets included), the optimisers ``self.opt`` and the update counter;
    RNG states are added by `runs.Run.save`."""

    opt: dict[str, torch.optim.Optimizer | None]
    n_updates: int = 0

    def modules(self) -> dict[str, nn.Module | None]:
        raise NotImplementedError

    def zero_grad(self) -> None:
        for o in self.opt.values():
            if o is not None:
                o.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {"nets": {k: m.state_dict() for k, m in self.modules().items() if m is not None},
                "opt": {k: (o.state_dict() if o is not None else None) for k, o in self.opt.items()},
                "n_updates": self.n_updates}

    def load_state_dict(self, state: dict) -> None:
        for k, m in self.modules().items():
            if m is not None:
                m.load_state_dict(state["nets"][k])
        for k, o in self.opt.items():
            if o is not None:
                o.load_state_dict(state["opt"][k])
        self.n_updates = int(state["n_updates"])


def fit(run: Run, algo: Any, config: BaselineConfig, sampler: ReplaySampler, domain, team: nn.Module, *,
        n_steps: int | None = None, update: Callable[[int], dict] | None = None, desc: str = "",
        progress: bool = True) -> int:
    """`loop.train_loop` over ``algo.update(sampler.sample(batch_size))`` with periodic greedy
    evaluation (``evaluation.evaluate``, summary logged as ``eval/score``, ...)."""
    def evaluate_team(done: int) -> dict:
        return evaluate(team, domain, episodes=config.eval_episodes, seed=EVAL_SEED + run.seed,
                        device=run.device).summary()

    update = update or (lambda i: algo.update(sampler.sample(config.batch_size)))
    return train_loop(run, algo, n_steps or config.steps, update, log_every=config.log_every,
                      eval_every=config.eval_every, evaluate=evaluate_team,
                      checkpoint_every=config.checkpoint_every, desc=desc or type(algo).__name__,
                      progress=progress)


def ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))

