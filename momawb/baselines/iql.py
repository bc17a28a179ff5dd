"""IQL, MAIQL and MAIQL-ft: implicit Q-learning baselines (PAPER.md section 5, Tables 3, 4a, 4b).

* **IQL** (Kostrikov et al. 2022), centralised training *and* execution: one learner sees every
  agent's observation (concatenated) and picks the joint action (discrete: one of
  n_actions^N joint actions). It sidesteps the coordination problem, hence the upper bound.
* **MAIQL**: per-agent Q_i(o_i, a_i) and V_i(o_i) mixed QMIX-style,
  Q_tot = sum_i w_Q^i(s, a) Q_i + b_Q(s, a) and V_tot = sum_i w_V^i(s) V_i + b_V(s) (the Q mixer
  sees the state and the joint action, as in the official code); V_tot regresses on the
  target Q_tot with the expectile loss, Q_tot on r + gamma V_tot(s'); decentralised policies
  by advantage-weighted regression with the team weight
  prod_i exp(beta (w_Q^i Q_i - w_V^i V_i)) * B(s),  B(s) = exp(beta (b_Q - b_V)),
  i.e. exp(beta (Q_tot - V_tot)), applied to the sum of the agents' log-likelihoods.
* **MAIQL-ft**: MAIQL trained offline for ``steps``, then fine-tuned for as many steps on
  Dyna-style ``rollout_length``-step rollouts of the ground-truth simulator
  (``domain.simulator()``) started at dataset states, added at the rate that makes the buffer
  hold as many online as offline transitions at the end; batches are drawn uniformly from both.

Borrowed: `nets.AgentPolicy` (Gaussian or categorical), `nets.AgentMLP` (V), `nets.Mixer`,
`nets.soft_update`; `common.AgentCritic` (double Q stacked over critics and agents),
`common.ReplaySampler`, `common.fit` (-> `loop.train_loop`: resume, NaN guard, tqdm, eval).

Deliberate deviations:
* PAPER.md writes B(s) = exp(b_Q - b_V) without beta; with beta inside, the product of
  the per-agent weights and B equals the official code's team weight exp(beta (Q_tot - V_tot)),
  which is what is computed here (and tested against the product form).
* Continuous policies follow IQL's authors (their NormalTanhPolicy, as d3rlpy's): the mean goes
  through tanh (``tanh_mean``) without squashing the distribution, and the log-std is one learned
  parameter per action dim in [-5, 2] (``state_dependent_std: false``); the paper's released code
  squashes the distribution with tanh and has a state-dependent std. On Reacher the learned std
  closed a 0.11 gap to d3rlpy's IQL (README "Baselines against a reference"); the tanh mean
  changed nothing there.
* No reward normalisation on Ant (the official code rescales MAIQL's rewards there) and no
  gradient-norm clipping.
* V, policy and Q losses are computed from the same forward pass and stepped together (the
  advantage uses V before its step, as in CORL's IQL).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from momawb.baselines.common import (AgentCritic, AgentTeam, BaselineConfig, Batch, CentralTeam, Learner,
                                     OnlineBuffer, ReplaySampler, adam, build_encoder, ceil_div, centralize, fit)
from momawb.config import param, register
from momawb.nets import AgentMLP, AgentPolicy, Mixer, soft_update

__all__ = ["IQLConfig", "MAIQLConfig", "MAIQLFTConfig", "expectile_loss", "mixed_advantage", "awr_weights",
           "IQL", "build_iql", "simulator_rollouts", "MAIQLFinetune", "train_iql", "train_maiql",
           "train_maiql_ft"]


# ---------------------------------------------------------------------------- configs
@register("iql")
@dataclass
class IQLConfig(BaselineConfig):
    """IQL with the paper's values (PAPER.md section 5); common fields in `BaselineConfig`."""

    expectile: float = param(0.7, "tau, expectile of the V loss; 0.5 = mean (SARSA), -> 1 = max (paper 0.7)",
                             gt=0, lt=1)
    beta: float = param(3.0, "beta, AWR inverse temperature: 0 = behaviour cloning, large = greedy on Q "
                             "(paper 3)", ge=0)
    max_weight: float = param(100.0, "AWR weights are clipped at this value (official code 100)", gt=0)
    tanh_mean: bool = param(True, "continuous policies: Gaussian mean tanh(mu), in [-1, 1], as IQL's authors' "
                                  "policy (and d3rlpy's); false = unbounded mean, greedy actions clipped")
    state_dependent_std: bool = param(False, "continuous policies: false = one learned log-std per agent and action "
                                             "dim in [-5, 2], as IQL's authors (and d3rlpy); true = from the policy "
                                             "net, in [-6, 0] (momawb before issue 18: 0.11 lower on Reacher, README)")


@register("maiql")
@dataclass
class MAIQLConfig(IQLConfig):
    """MAIQL: IQL's values with QMIX-style decomposition of Q and V (PAPER.md section 5)."""


@register("maiql_ft")
@dataclass
class MAIQLFTConfig(MAIQLConfig):
    """MAIQL-ft: ``steps`` offline, then ``steps`` more on simulator rollouts (PAPER.md section 5)."""

    rollout_length: int = param(10, "k, steps of each Dyna-style simulator rollout (MOMA-PPO's k = 10)", ge=1)


# ---------------------------------------------------------------------------- losses
def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """IQL's V loss, E[|tau - 1(u < 0)| u^2] with u = Q - V (Kostrikov et al. 2022, eq. 5)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def mixed_advantage(w_q: torch.Tensor, q: torch.Tensor, b_q: torch.Tensor,
                    w_v: torch.Tensor, v: torch.Tensor, b_v: torch.Tensor) -> torch.Tensor:
    """Q_tot - V_tot = sum_i (w_Q^i Q_i - w_V^i V_i) + (b_Q - b_V): (B, N) x 4, (B,) x 2 -> (B,)."""
    return (w_q * q - w_v * v).sum(-1) + (b_q - b_v)


def awr_weights(advantage: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """exp(beta A), clipped at ``max_weight`` (AWR, Peng et al. 2019; IQL eq. 7). For MAIQL,
    A = `mixed_advantage`, so the weight is prod_i exp(beta (w_Q^i Q_i - w_V^i V_i)) exp(beta (b_Q - b_V))."""
    return torch.exp(beta * advantage).clamp(max=max_weight)


# ---------------------------------------------------------------------------- algorithm
class IQL(Learner):
    """IQL over M learners: M = 1 centralised (no mixers) or M = N agents with mixers (MAIQL).

    Holds the encoder (memory module), double Q, V, policy, optional mixers, target copies
    (Q, Q mixer, encoder) and one optimiser per part.
    """

    def __init__(self, config: IQLConfig, domain, encoder, q: AgentCritic, v: AgentMLP, policy: AgentPolicy,
                 q_mixer: Mixer | None = None, v_mixer: Mixer | None = None, central: bool = False):
        self.cfg, self.domain, self.central = config, domain, central
        self.encoder, self.q, self.v, self.policy = encoder, q, v, policy
        self.q_mixer, self.v_mixer = q_mixer, v_mixer
        self.target_encoder, self.q_target = copy.deepcopy(encoder), copy.deepcopy(q)
        self.q_mixer_target = copy.deepcopy(q_mixer)
        for m in (self.target_encoder, self.q_target, self.q_mixer_target):
            if m is not None:
                m.requires_grad_(False)
        self.opt = {"q": adam([q, q_mixer], config.lr), "v": adam([v, v_mixer], config.lr),
                    "policy": adam(policy, config.lr), "memory": adam(encoder, config.memory_lr)}
        self.n_updates = 0

    # ----- mixing: (C, B, M) or (B, M) per-learner values -> team values (C, B) or (B,)
    def _mix_q(self, q: torch.Tensor, batch: Batch, mixer: Mixer | None) -> torch.Tensor:
        if mixer is None:
            return q[..., 0]
        return mixer(q, batch.states, self.domain.encode_actions(batch.actions))

    def _mix_v(self, v: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        return v[..., 0] if self.v_mixer is None else self.v_mixer(v, states)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self.central:
            batch = centralize(batch, self.domain)
        self.zero_grad()
        x = self.encoder(batch.obs, batch.hist)                                   # (B, M, D)
        with torch.no_grad():
            x_t = self.target_encoder(batch.obs, batch.hist)
            q_t = self._mix_q(self.q_target(x_t, batch.actions), batch, self.q_mixer_target).min(0).values
            v_next = self._mix_v(self.v(self.encoder(batch.next_obs, batch.next_hist))[..., 0], batch.next_states)
            y = batch.rewards + self.cfg.gamma * (1.0 - batch.terminals) * v_next
        # V: expectile regression of V_tot on the target Q_tot
        v_tot = self._mix_v(self.v(x)[..., 0], batch.states)
        v_loss = expectile_loss(q_t - v_tot, self.cfg.expectile)
        # policy: advantage-weighted regression, team weight on the joint log-likelihood
        adv = q_t - v_tot.detach()
        w = awr_weights(adv, self.cfg.beta, self.cfg.max_weight)
        policy_loss = -(w * self.policy.log_prob(x, batch.actions).sum(-1)).mean()
        # Q: TD regression of both mixed critics on r + gamma V_tot(s')
        q_tot = self._mix_q(self.q(x, batch.actions), batch, self.q_mixer)      # (2, B)
        q_loss = (q_tot - y).pow(2).mean()
        (v_loss + policy_loss + q_loss).backward()
        for o in self.opt.values():
            if o is not None:
                o.step()
        soft_update(self.q_target, self.q, self.cfg.tau)
        soft_update(self.target_encoder, self.encoder, self.cfg.tau)
        if self.q_mixer is not None:
            soft_update(self.q_mixer_target, self.q_mixer, self.cfg.tau)
        self.n_updates += 1
        return {"train/v_loss": v_loss.detach(), "train/q_loss": q_loss.detach(),
                "train/policy_loss": policy_loss.detach(), "train/q": q_t.mean().detach(),
                "train/advantage": adv.mean().detach(), "train/awr_weight": w.mean().detach()}

    def modules(self) -> dict:
        return {"encoder": self.encoder, "q": self.q, "v": self.v, "policy": self.policy,
                "q_mixer": self.q_mixer, "v_mixer": self.v_mixer, "target_encoder": self.target_encoder,
                "q_target": self.q_target, "q_mixer_target": self.q_mixer_target}

    def team(self):
        if self.central:
            return CentralTeam(self.policy, self.domain.n_agents, self.domain.n_actions)
        return AgentTeam(self.encoder, self.policy)


def build_iql(config: IQLConfig, domain, central: bool, device: torch.device | str = "cpu") -> IQL:
    """Networks for IQL (``central``: one learner over the joint action) or MAIQL."""
    n = domain.n_agents
    if central:
        if config.memory:
            raise ValueError("IQL is centralised over all observations and has no memory module (the "
                             "paper reports it only under full observability); set memory=False")
        m, in_dim = 1, n * domain.obs_dim
        n_act = domain.n_actions ** n if domain.discrete else None
        act_dim = 1 if domain.discrete else n * domain.act_dim
        encoder = build_encoder(domain, config, n_agents=1, obs_dim=in_dim)
    else:
        m, n_act, act_dim = n, domain.n_actions, domain.act_dim
        encoder = build_encoder(domain, config)
        in_dim = encoder.out_dim
    q = AgentCritic(m, in_dim, act_dim, n_act, 2, config.hidden)
    v = AgentMLP(m, in_dim, 1, config.hidden)
    std = {} if config.state_dependent_std else {"state_dependent_std": False, "log_std_min": -5.0, "log_std_max": 2.0}
    policy = AgentPolicy(m, in_dim, act_dim, n_act, config.hidden, tanh=config.tanh_mean, **std)
    q_mixer = v_mixer = None
    if not central:
        q_mixer = Mixer(domain.state_dim, n, config.hidden, extra_dim=domain.model_action_dim)
        v_mixer = Mixer(domain.state_dim, n, config.hidden)
    for mod in (encoder, q, v, policy, q_mixer, v_mixer):
        if mod is not None:
            mod.to(device)
    return IQL(config, domain, encoder, q, v, policy, q_mixer, v_mixer, central)


# ---------------------------------------------------------------------------- MAIQL-ft
@torch.no_grad()
def simulator_rollouts(algo: IQL, sampler: ReplaySampler, simulator, n_rollouts: int, length: int) -> Batch:
    """Dyna-style rollouts of the current (stochastic) policies in the ground-truth simulator,
    started at ``n_rollouts`` dataset states (with their dataset histories); a rollout stops
    after ``length`` steps or at a terminal. Returns all transitions as one `Batch`."""
    domain, dev = algo.domain, sampler.device
    idx = sampler.indices(n_rollouts)
    b = sampler.get(idx)
    states, hist = b.states, b.hist
    qpos = None if sampler.qpos is None else sampler.qpos[idx]
    qvel = None if sampler.qvel is None else sampler.qvel[idx]
    out = []
    for _ in range(length):
        obs = domain.observe(states)
        actions = AgentTeam(algo.encoder, algo.policy).act(obs, hist, greedy=False)
        sim = simulator.step(states.cpu().numpy(), actions.cpu().numpy(), qpos, qvel)
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=dev)
        nxt, term = t(sim.next_states), t(sim.terminals)
        next_hist = None
        if hist is not None:
            next_hist = torch.cat([hist[:, :, 1:], domain.history_row(obs, actions)[:, :, None]], 2)
        out.append(Batch(states, nxt, obs, domain.observe(nxt), actions, t(sim.rewards), term, hist, next_hist))
        live = ~term.bool()
        if not live.any():
            break
        keep = live.cpu().numpy()
        states, hist = nxt[live], (None if next_hist is None else next_hist[live])
        qpos = None if sim.qpos is None else sim.qpos[keep]
        qvel = None if sim.qvel is None else sim.qvel[keep]
    return Batch.cat(out)


class MAIQLFinetune:
    """MAIQL for ``steps`` offline updates, then ``steps`` updates on the dataset plus a growing
    buffer of simulator rollouts that ends as large as the dataset (PAPER.md section 5)."""

    def __init__(self, algo: IQL, sampler: ReplaySampler, domain, config: MAIQLFTConfig):
        self.algo, self.sampler, self.cfg = algo, sampler, config
        self.simulator = domain.simulator()
        self.buffer = OnlineBuffer(len(sampler))

    def update(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        if step < cfg.steps:
            return self.algo.update(self.sampler.sample(cfg.batch_size))
        target = ceil_div(len(self.sampler) * (step - cfg.steps + 1), cfg.steps)
        if self.buffer.size < target:
            self.buffer.add(simulator_rollouts(self.algo, self.sampler, self.simulator,
                                               ceil_div(target - self.buffer.size, cfg.rollout_length),
                                               cfg.rollout_length))
        idx = self.sampler.rng.integers(0, len(self.sampler) + self.buffer.size, cfg.batch_size)
        offline = idx < len(self.sampler)
        parts = [self.sampler.get(idx[offline])]
        if not offline.all():
            parts.append(self.buffer.get(idx[~offline] - len(self.sampler)))
        batch = Batch.cat(parts)
        return {**self.algo.update(batch), "train/online_transitions": float(self.buffer.size)}

    def state_dict(self) -> dict:
        return {**self.algo.state_dict(), "buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.algo.load_state_dict(state)
        self.buffer.load_state_dict(state["buffer"])


# ---------------------------------------------------------------------------- train
def _train(config: IQLConfig, dataset, domain, run, central: bool, finetune: bool, progress: bool):
    algo = build_iql(config, domain, central, run.device)
    sampler = ReplaySampler(dataset, domain, run.device, run.np_rng, config.memory, config.memory_length)
    team = algo.team()
    if finetune:
        ft = MAIQLFinetune(algo, sampler, domain, config)
        fit(run, ft, config, sampler, domain, team, n_steps=2 * config.steps, update=ft.update,
            desc="MAIQL-ft", progress=progress)
    else:
        fit(run, algo, config, sampler, domain, team, desc="IQL" if central else "MAIQL", progress=progress)
    return team


def train_iql(config: IQLConfig, dataset, domain, run, *, progress: bool = True, **extra):
    """Centralised IQL (training and execution); returns a `CentralTeam`."""
    return _train(config, dataset, domain, run, central=True, finetune=False, progress=progress)


def train_maiql(config: MAIQLConfig, dataset, domain, run, *, progress: bool = True, **extra):
    """MAIQL; returns the decentralised team."""
    return _train(config, dataset, domain, run, central=False, finetune=False, progress=progress)


def train_maiql_ft(config: MAIQLFTConfig, dataset, domain, run, *, progress: bool = True, **extra):
    """MAIQL offline for ``steps``, then fine-tuned for ``steps`` on simulator rollouts."""
    if not domain.has_simulator:
        raise ValueError(f"MAIQL-ft needs a ground-truth simulator, and domain {domain.name!r} has none")
    return _train(config, dataset, domain, run, central=False, finetune=True, progress=progress)
