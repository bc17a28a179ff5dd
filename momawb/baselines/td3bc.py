"""MATD3+BC and ITD3+BC (PAPER.md section 5, Tables 4a, 4b), after TD3+BC (Fujimoto & Gu 2021).

Deterministic tanh policies a^i = pi_i(x^i), double critics with target policy smoothing and
delayed actor updates (TD3), and the actor loss of TD3+BC,
  L_pi = -lambda Q(s, pi(x)) + sum_dims (pi(x) - a)^2,   lambda = alpha / mean|Q|  (alpha 2.5).
* **ITD3+BC** (independent): agent i learns Q_i(x^i, a^i) on the team reward, its own lambda_i.
* **MATD3+BC** (CTDE): Q_tot(s, a) = sum_i w_i(s) Q_i(x^i, a^i) + b(s) with a QMIX-style mixer of
  the global state (`nets.Mixer`); TD on Q_tot, every actor maximises Q_tot with all agents'
  current policy actions plugged in, lambda from |Q_tot|.

Continuous actions only (raises on a discrete domain). Borrowed: `common.TanhPolicy`,
`common.AgentCritic` (2 critics x N agents, stacked), `nets.Mixer`, `nets.soft_update`,
`common.ReplaySampler`, `common.fit` (-> `loop.train_loop`). `TD3BC.critic_loss` and
`TD3BC.actor_loss` are the hooks ICQL and IOMAR (`cql.py`) override.

Deliberate deviations: the official code has no centralised TD3 (MATD3+BC is built here from
the paper's description, with the state-only mixer of QMIX); its BC term is summed over action
dims, as here. The paper is silent on input normalisation; ``obs_norm`` (default on) follows
TD3+BC's authors: (s - mu) / (sigma + 1e-3) with dataset statistics, for every agent's
observation and the mixer's state (without it, MATD3+BC diverged on one of three Reacher seeds:
README, "Baselines against a reference").
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from momawb.baselines.common import (AgentCritic, AgentTeam, BaselineConfig, Batch, Learner, ReplaySampler, TanhPolicy,
                                     adam, build_encoder, fit, require_continuous, state_norm)
from momawb.config import param, register
from momawb.nets import Mixer, RunningNorm, soft_update

__all__ = ["TD3BCConfig", "td3_target", "bc_lambda", "td3bc_actor_loss", "TD3BC", "build_td3", "fit_td3",
           "train_matd3bc", "train_itd3bc"]


@register("matd3bc")
@dataclass
class TD3BCConfig(BaselineConfig):
    """TD3+BC with the paper's values (PAPER.md section 5); MATD3+BC and ITD3+BC share it."""

    policy_delay: int = param(2, "d, critic updates per actor and target update (paper 2)", ge=1)
    policy_noise: float = param(0.2, "sigma of the target policy smoothing noise (paper 0.2)", ge=0)
    noise_clip: float = param(0.5, "c, the smoothing noise is clipped to [-c, c] (paper 0.5)", ge=0)
    bc_alpha: float = param(2.5, "alpha, lambda = alpha / mean|Q|: small = more BC (paper 2.5); "
                                 "0 = no BC term and lambda = 1", ge=0)
    max_action: float = param(1.0, "actions lie in [-max_action, max_action]", gt=0)
    obs_norm: bool = param(True, "standardise observations (and the mixer's state) by their dataset mean and "
                                 "std, as TD3+BC's authors do (Fujimoto & Gu 2021, section 5); false = raw inputs")


# ---------------------------------------------------------------------------- losses
def td3_target(q_next_min: torch.Tensor, rewards: torch.Tensor, terminals: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - d) min_j Q'_j(s', a~'); r and d (B,) broadcast over trailing agent dims."""
    extra = q_next_min.dim() - rewards.dim()
    r, d = rewards.reshape(*rewards.shape, *([1] * extra)), terminals.reshape(*terminals.shape, *([1] * extra))
    return r + gamma * (1.0 - d) * q_next_min


def bc_lambda(q: torch.Tensor, alpha: float) -> torch.Tensor:
    """lambda = alpha / mean_batch |Q| (TD3+BC eq. 3), per agent when q is (B, N); 1 when alpha = 0."""
    if alpha <= 0:
        return torch.ones_like(q[0])
    return alpha / q.abs().mean(0).detach().clamp(min=1e-6)


def td3bc_actor_loss(q_pi: torch.Tensor, pi: torch.Tensor, actions: torch.Tensor, alpha: float,
                     q_weight: float = 1.0) -> torch.Tensor:
    """-q_weight lambda Q(s, pi) + (pi - a)^2 summed over action dims; mean over the batch, sum over
    agents (each agent's policy only enters its own terms, so the sum is N independent losses)."""
    loss = -q_weight * (bc_lambda(q_pi, alpha) * q_pi).mean(0).sum()
    if alpha > 0:
        loss = loss + (pi - actions).pow(2).sum(-1).mean(0).sum()
    return loss


# ---------------------------------------------------------------------------- algorithm
class TD3BC(Learner):
    """TD3+BC over N agents: independent critics, or mixed into Q_tot when ``mixer`` is given."""

    def __init__(self, config: TD3BCConfig, encoder, actor: TanhPolicy, critic: AgentCritic,
                 mixer: Mixer | None = None, state_norm: RunningNorm | None = None):
        self.cfg, self.encoder, self.actor, self.critic, self.mixer = config, encoder, actor, critic, mixer
        self.state_norm = state_norm           # the mixer's input standardisation (obs_norm), fixed
        self.target_encoder, self.actor_target = copy.deepcopy(encoder), copy.deepcopy(actor)
        self.critic_target, self.mixer_target = copy.deepcopy(critic), copy.deepcopy(mixer)
        for m in (self.target_encoder, self.actor_target, self.critic_target, self.mixer_target):
            if m is not None:
                m.requires_grad_(False)
        self.opt = {"critic": adam([critic, mixer], config.lr), "actor": adam(actor, config.lr),
                    "memory": adam(encoder, config.memory_lr)}
        self.n_updates = 0

    def mix(self, q: torch.Tensor, states: torch.Tensor, mixer: Mixer | None) -> torch.Tensor:
        """(C, B, N) or (B, N) per-agent values -> Q_tot (C, B) / (B,), or unchanged when independent."""
        if mixer is None:
            return q
        return mixer(q, states if self.state_norm is None else self.state_norm(states))

    # ----- hooks (cql.py adds its terms)
    def critic_loss(self, q: torch.Tensor, y: torch.Tensor, batch: Batch,
                    x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """TD error of both critics; ``x`` (the encoded observations) is for subclasses."""
        return (q - y).pow(2).mean(), {}

    def actor_loss(self, pi: torch.Tensor, q_pi: torch.Tensor, batch: Batch,
                   x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """TD3+BC's actor loss (`td3bc_actor_loss`)."""
        return td3bc_actor_loss(q_pi, pi, batch.actions, self.cfg.bc_alpha), {}

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        self.zero_grad()
        with torch.no_grad():
            x_next = self.target_encoder(batch.next_obs, batch.next_hist)
            noise = (torch.randn_like(batch.actions) * cfg.policy_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
            a_next = (self.actor_target(x_next) + noise).clamp(-cfg.max_action, cfg.max_action)
            q_next = self.mix(self.critic_target(x_next, a_next), batch.next_states, self.mixer_target)
            y = td3_target(q_next.min(0).values, batch.rewards, batch.terminals, cfg.gamma)
        x = self.encoder(batch.obs, batch.hist)
        q = self.mix(self.critic(x, batch.actions), batch.states, self.mixer)          # (2, B[, N])
        critic_loss, info = self.critic_loss(q, y, batch, x)
        actor_step = self.n_updates % cfg.policy_delay == 0
        # the encoder steps last, so x stays valid for the actor loss: keep its graph
        critic_loss.backward(retain_graph=actor_step and self.opt["memory"] is not None)
        self.opt["critic"].step()
        metrics = {"train/critic_loss": critic_loss.detach(), "train/q": q.mean().detach(), **info}
        if actor_step:
            pi = self.actor(x)
            q_pi = self.mix(self.critic(x, pi)[0], batch.states, self.mixer)            # (B[, N])
            actor_loss, info = self.actor_loss(pi, q_pi, batch, x)
            actor_loss.backward()
            self.opt["actor"].step()
            metrics.update({"train/actor_loss": actor_loss.detach(), **info})
            self.soft_update_targets()
        if self.opt["memory"] is not None:
            self.opt["memory"].step()
        self.n_updates += 1
        return metrics

    def soft_update_targets(self) -> None:
        for target, source in ((self.critic_target, self.critic), (self.actor_target, self.actor),
                               (self.mixer_target, self.mixer), (self.target_encoder, self.encoder)):
            if target is not None:
                soft_update(target, source, self.cfg.tau)

    def modules(self) -> dict:
        return {"encoder": self.encoder, "actor": self.actor, "critic": self.critic, "mixer": self.mixer,
                "target_encoder": self.target_encoder, "actor_target": self.actor_target,
                "critic_target": self.critic_target, "mixer_target": self.mixer_target, "state_norm": self.state_norm}

    def team(self) -> AgentTeam:
        return AgentTeam(self.encoder, self.actor, self.cfg.max_action)


def build_td3(config: TD3BCConfig, domain, ctde: bool, cls: type = TD3BC, device: torch.device | str = "cpu",
              method: str = "TD3+BC", sampler: ReplaySampler | None = None) -> TD3BC:
    """Networks for ``cls`` (TD3BC or a subclass): mixer when ``ctde``, independent critics otherwise.
    ``config.obs_norm`` needs the ``sampler`` (its dataset's statistics); ValueError without it."""
    require_continuous(domain, method)
    if config.obs_norm and sampler is None:
        raise ValueError(f"{method} with obs_norm=True standardises by dataset statistics: pass the sampler "
                         "(or set obs_norm=False)")
    encoder = build_encoder(domain, config, obs=sampler.obs if config.obs_norm else None).to(device)
    n, d = domain.n_agents, encoder.out_dim
    actor = TanhPolicy(n, d, domain.act_dim, config.hidden, config.max_action).to(device)
    critic = AgentCritic(n, d, domain.act_dim, None, 2, config.hidden).to(device)
    mixer = Mixer(domain.state_dim, n, config.hidden).to(device) if ctde else None
    norm = state_norm(sampler.states).to(device) if ctde and config.obs_norm else None
    return cls(config, encoder, actor, critic, mixer, norm)


def fit_td3(config, dataset, domain, run, ctde: bool, name: str, progress: bool, cls: type = TD3BC) -> AgentTeam:
    """Build ``cls``, train it on ``dataset`` through `common.fit`, return the team (used by cql.py too)."""
    sampler = ReplaySampler(dataset, domain, run.device, run.np_rng, config.memory, config.memory_length)
    algo = build_td3(config, domain, ctde, cls, run.device, name, sampler)
    team = algo.team()
    fit(run, algo, config, sampler, domain, team, desc=name, progress=progress)
    return team


def train_matd3bc(config: TD3BCConfig, dataset, domain, run, *, progress: bool = True, **extra) -> AgentTeam:
    """MATD3+BC (CTDE, QMIX-style critic); returns the decentralised team."""
    return fit_td3(config, dataset, domain, run, True, "MATD3+BC", progress)


def train_itd3bc(config: TD3BCConfig, dataset, domain, run, *, progress: bool = True, **extra) -> AgentTeam:
    """ITD3+BC (independent learners); returns the decentralised team."""
    return fit_td3(config, dataset, domain, run, False, "ITD3+BC", progress)
