"""Where MOMA-PPO's transitions come from (PAPER.md section 3, Algorithm 1 lines 3-9).

All sources fill one `Rollouts` layout, b rollouts of at most k steps as (b, k, ...) tensors:

* `model_rollouts`: k batched steps of a model env (the learned world model, or the
  ground-truth simulator restarted from dataset states) from `sample_starts`, with the
  epistemic penalty (`penalised_reward`) and a *timeout* the first time ``eps_g >= l_eps``;
* `OnlineCollector`: plain MAPPO segments from real PettingZoo envs stepped in lockstep.

Both act with the agents' decentralised policies on their own observations and histories.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import torch

from momawb.model_env import StepOut

if TYPE_CHECKING:
    from momawb.moma_agents import MomaPPOAgents
    from momawb.moma_ppo import MomaPPOConfig

__all__ = ["slide", "Rollouts", "sample_starts", "penalised_reward", "model_rollouts", "OnlineCollector"]


def slide(hist: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    """(B, N, L, F) window slid by one (B, N, F) row: oldest out, newest last."""
    return None if hist is None else torch.cat([hist[:, :, 1:], rows[:, :, None]], 2)


@dataclass
class Rollouts:
    """b rollouts of at most k steps, as (b, k, ...) tensors; ``alive`` marks real transitions.

    ``not_terminal`` is f (0: s' absorbing), ``not_timeout`` is tau (0: the rollout was cut
    after this step and bootstraps from V(s')). Histories are None without memory.
    """

    states: torch.Tensor        # (b, k, S)
    next_states: torch.Tensor   # (b, k, S)
    hist: torch.Tensor | None   # (b, k, N, L, F)
    next_hist: torch.Tensor | None
    actions: torch.Tensor       # (b, k, N, act_dim), unclipped samples
    logp: torch.Tensor          # (b, k) joint log-prob at collection
    rewards: torch.Tensor       # (b, k) penalised reward r_tilde
    raw_rewards: torch.Tensor   # (b, k) r_bar
    penalty: torch.Tensor       # (b, k)
    eps_g: torch.Tensor         # (b, k) unclamped
    clipped: torch.Tensor       # (b, k) share of s' coordinates the model's bounding box clipped
    not_terminal: torch.Tensor  # (b, k) float
    not_timeout: torch.Tensor   # (b, k) float
    alive: torch.Tensor         # (b, k) bool
    features: torch.Tensor | None = None   # (b, k, N, D) the encoder output the policy acted on, or None

    @staticmethod
    def stack(steps: list[dict]) -> "Rollouts":
        return Rollouts(**{f.name: (None if steps[0][f.name] is None else torch.stack([s[f.name] for s in steps], 1))
                           for f in fields(Rollouts)})

    def stats(self) -> dict[str, float]:
        a = self.alive.float()
        n = a.sum().clamp(min=1)
        lengths = a.sum(1)
        last = (lengths.long() - 1).clamp(min=0)[:, None]
        ended_term = (1 - self.not_terminal.gather(1, last))[:, 0]
        k = self.alive.shape[1]
        early = ((lengths < k) & (ended_term == 0)).float()   # cut by uncertainty before step k
        return {"rollout/return": float((self.raw_rewards * a).sum(1).mean()),
                "rollout/penalised_return": float((self.rewards * a).sum(1).mean()),
                "rollout/reward": float((self.raw_rewards * a).sum() / n),
                "rollout/penalty": float((self.penalty * a).sum() / n),
                "rollout/eps_g": float((self.eps_g * a).sum() / n),
                "rollout/clipped": float((self.clipped * a).sum() / n),
                "rollout/length": float(lengths.mean()),
                "rollout/timeout_frac": float(early.mean()),
                "rollout/terminal_frac": float(ended_term.mean()),
                "rollout/transitions": float(n)}


def sample_starts(dataset, domain, n: int, rng: np.random.Generator, device: torch.device,
                  memory_length: int = 0, with_sim_state: bool = False) -> dict:
    """n dataset states, uniformly, with their real past (and qpos/qvel for the simulator)."""
    idx = rng.integers(0, len(dataset), n)
    out = {"states": torch.as_tensor(dataset.observations[idx], device=device), "hist": None,
           "qpos": None, "qvel": None}
    if memory_length:
        views = dataset.agent_views(domain, memory_length)
        out["hist"] = torch.as_tensor(views.history(idx), device=device)
    if with_sim_state and dataset.qpos is not None:
        out["qpos"] = torch.as_tensor(dataset.qpos[idx], dtype=torch.float64, device=device)
        out["qvel"] = torch.as_tensor(dataset.qvel[idx], dtype=torch.float64, device=device)
    return out


def penalised_reward(out: StepOut, cfg: MomaPPOConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """r_tilde = r_bar - lambda_r min(eps_r, l_eps) - lambda_g min(eps_g, l_eps) (or MOPO's)."""
    if cfg.penalty == "epistemic":
        pen = cfg.lambda_r * out.eps_r.clamp(max=cfg.l_eps) + cfg.lambda_g * out.eps_g.clamp(max=cfg.l_eps)
    else:
        pen = cfg.aleatoric_coef * out.aleatoric
    return out.rewards - pen, pen


@torch.no_grad()
def model_rollouts(agents: MomaPPOAgents, env, domain, start: dict, cfg: MomaPPOConfig) -> Rollouts:
    """Algorithm 1's inner loop: k batched model steps from ``start`` (see `sample_starts`).

    ``env.step(states (B, S), actions (B, N, act_dim), generator, [qpos, qvel]) -> StepOut``.
    One policy forward and one env step per step for all b rollouts and agents. Ended rollouts
    keep their state (frozen) and are masked out by ``alive``.
    """
    states, hist, qpos, qvel = start["states"], start["hist"], start["qpos"], start["qvel"]
    b, k = states.shape[0], cfg.horizon
    alive = torch.ones(b, dtype=torch.bool, device=states.device)
    steps = []
    for j in range(k):
        obs = domain.observe(states)                                   # (b, N, O)
        x = agents.features(obs, hist)
        actions, logp = agents.policy.sample(x)
        env_actions = actions if domain.discrete else actions.clamp(-cfg.action_bound, cfg.action_bound)
        sim = {} if qpos is None else {"qpos": qpos, "qvel": qvel}
        out = env.step(states, env_actions, None, **sim)
        timeout = out.eps_g >= cfg.l_eps                                # before any clamping
        if j == k - 1:
            timeout = torch.ones_like(timeout)
        reward, pen = penalised_reward(out, cfg)
        not_term = out.not_terminal.bool()
        next_hist = slide(hist, domain.history_row(obs, actions))
        steps.append(dict(states=states, next_states=out.next_states, hist=hist, next_hist=next_hist,
                          actions=actions, logp=logp.sum(-1), rewards=reward, raw_rewards=out.rewards,
                          penalty=pen, eps_g=out.eps_g, not_terminal=not_term.float(),
                          clipped=out.clipped if out.clipped is not None else torch.zeros_like(out.eps_g),
                          not_timeout=(~timeout).float(), alive=alive, features=x))
        alive = alive & not_term & ~timeout
        keep = alive[:, None]
        states = torch.where(keep, out.next_states, states)
        if hist is not None:
            hist = torch.where(keep[:, :, None, None], next_hist, hist)
        if qpos is not None and out.qpos is not None:
            qpos, qvel = torch.where(keep, out.qpos, qpos), torch.where(keep, out.qvel, qvel)
    return Rollouts.stack(steps)


class OnlineCollector:
    """Plain MAPPO data: ``n_envs`` real PettingZoo envs stepped in lockstep (``mode='online'``).

    Each iteration collects a segment of ``segment_length`` steps per env into the (b, k)
    layout (b = n_envs): truncation and the segment's end are timeouts (bootstrap), real
    terminations are terminals. Envs and histories persist across iterations.
    """

    def __init__(self, domain, cfg: MomaPPOConfig, rng: np.random.Generator, device: torch.device):
        self.domain, self.cfg, self.rng, self.device = domain, cfg, rng, device
        self.envs = [domain.make_env() for _ in range(cfg.n_envs)]
        self.L = cfg.memory_length if cfg.memory else 0
        feat = domain.obs_dim + (domain.n_actions if domain.discrete else domain.act_dim)
        self.hist = torch.zeros(cfg.n_envs, domain.n_agents, self.L, feat, device=device) if self.L else None
        self.ep_return = np.zeros(cfg.n_envs)
        self.finished: list[float] = []
        for e in range(cfg.n_envs):
            self._reset(e)

    def _reset(self, e: int) -> None:
        self.envs[e].reset(seed=int(self.rng.integers(2**31 - 1)))
        self.ep_return[e] = 0.0

    def _states(self) -> torch.Tensor:
        return torch.as_tensor(np.stack([env.state() for env in self.envs]).astype(np.float32), device=self.device)

    @torch.no_grad()
    def collect(self, agents: MomaPPOAgents) -> Rollouts:
        d, cfg, steps = self.domain, self.cfg, []
        n, T = cfg.n_envs, cfg.segment_length
        states = self._states()
        for t in range(T):
            obs = d.observe(states)
            x = agents.features(obs, self.hist)
            actions, logp = agents.policy.sample(x)
            env_act = actions if d.discrete else actions.clamp(-cfg.action_bound, cfg.action_bound)
            env_act = env_act.cpu().numpy()
            rew, term, trunc = np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool)
            for e, env in enumerate(self.envs):   # PettingZoo envs step one at a time
                agents_e = list(env.agents)
                a = {ag: (int(env_act[e, i, 0]) if d.discrete else env_act[e, i]) for i, ag in enumerate(agents_e)}
                _, r, te, tr, _ = env.step(a)
                rew[e], term[e] = r[agents_e[0]], te[agents_e[0]]
                trunc[e] = tr[agents_e[0]] or (not env.agents and not term[e])
            next_states = self._states()
            next_hist = slide(self.hist, d.history_row(obs, actions))
            timeout = trunc | (t == T - 1)
            self.ep_return += rew
            steps.append(dict(states=states, next_states=next_states, hist=self.hist, next_hist=next_hist,
                              actions=actions, logp=logp.sum(-1), rewards=torch.as_tensor(rew, device=self.device),
                              raw_rewards=torch.as_tensor(rew, device=self.device),
                              penalty=torch.zeros(n, device=self.device), eps_g=torch.zeros(n, device=self.device),
                              clipped=torch.zeros(n, device=self.device),
                              not_terminal=torch.as_tensor(~term, device=self.device).float(),
                              not_timeout=torch.as_tensor(~timeout, device=self.device).float(),
                              alive=torch.ones(n, dtype=torch.bool, device=self.device), features=x))
            done = term | trunc
            for e in np.flatnonzero(done):
                self.finished.append(float(self.ep_return[e]))
                self._reset(e)
            if next_hist is not None:   # a new episode starts with an empty (zero) history
                keep = torch.as_tensor(~done, device=self.device).float()[:, None, None, None]
                next_hist = next_hist * keep
            self.hist = next_hist
            states = self._states() if done.any() else next_states
        return Rollouts.stack(steps)

    def pop_episode_returns(self) -> list[float]:
        out, self.finished = self.finished, []
        return out
