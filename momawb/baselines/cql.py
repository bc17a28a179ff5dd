"""ICQL and IOMAR: independent conservative learners (PAPER.md section 5, Tables 4a, 4b).

Both are independent TD3 learners (`td3bc.TD3BC` without a mixer) whose critics carry the
conservative penalty of CQL (Kumar et al. 2020) as in OMAR's code: for agent i,
  alpha_cql ( T log sum_{a in A_s} exp(Q_i(x^i, a) / T) - Q_i(x^i, a^i) ),
A_s = K uniform actions + K noisy current-policy actions pi(x) + eps + K noisy next-policy
actions pi(x') + eps (eps ~ N(0, sigma^2)), all evaluated at x.
* **ICQL** actor: -Q_i(x^i, pi_i(x^i)) (lambda = 1, no BC).
* **IOMAR** (Pan et al. 2022) actor: (1 - c) (-Q_i) + c ||pi_i(x^i) - a*||^2, where a* is the
  best action of a cross-entropy search on Q_i (``omar_iters`` rounds of ``omar_samples`` actions
  from N(mu, sigma^2), refit on the ``omar_elites`` best), used only where Q_i(a*) > Q_i(pi).

Continuous actions only. Borrowed: everything of `td3bc` (networks, TD3 update, targets,
checkpoints); only the two loss hooks differ.

Deliberate deviations:
* IOMAR's coefficient c defaults to the paper's 1 (the official code's default is 0.9); with
  c = 1 the actor only imitates the searched action.
* The log-sum-exp has no importance-sampling correction for the proposal densities, and
  OMAR's 1e-3 penalty on the pre-tanh action is left out.
* The CQL penalty is averaged over critics, like the TD error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from momawb.baselines.common import AgentTeam
from momawb.baselines.td3bc import TD3BC, TD3BCConfig, fit_td3, td3bc_actor_loss
from momawb.config import param, register

__all__ = ["CQLConfig", "OMARConfig", "cql_penalty", "cem_search", "omar_mimic_loss", "CQL", "OMAR",
           "train_icql", "train_iomar"]


@register("icql")
@dataclass
class CQLConfig(TD3BCConfig):
    """ICQL with the paper's values (PAPER.md section 5); TD3 fields from `TD3BCConfig`."""

    bc_alpha: float = param(0.0, "alpha of TD3+BC; 0 = no BC term, lambda = 1 (official ICQL/IOMAR flags)", ge=0)
    cql_alpha: float = param(1.0, "alpha_cql, weight of the conservative penalty (paper 1; 5 on Ant expert)", ge=0)
    cql_temperature: float = param(1.0, "T, temperature of the log-sum-exp (paper 1)", gt=0)
    cql_samples: int = param(10, "K, actions sampled per proposal (uniform, pi(s), pi(s')) (paper 10)", ge=1)
    cql_noise: float = param(0.2, "sigma of the noise added to policy proposals (paper 0.2)", ge=0)
    obs_norm: bool = param(False, "standardise observations by dataset statistics (off: neither CQL's nor "
                                  "OMAR's code normalises inputs)")


@register("iomar")
@dataclass
class OMARConfig(CQLConfig):
    """IOMAR with the paper's values (PAPER.md section 5)."""

    omar_coeff: float = param(1.0, "c, weight of the imitation of the searched action (paper 1, official 0.9)",
                              ge=0, le=1)
    omar_iters: int = param(2, "rounds of the cross-entropy search (paper 2)", ge=1)
    omar_mu: float = param(0.0, "mu_0, initial mean of the search (paper 0)")
    omar_sigma: float = param(2.0, "sigma_0, initial std of the search (paper 2)", gt=0)
    omar_samples: int = param(20, "actions sampled per round (paper 20)", ge=1)
    omar_elites: int = param(5, "elites refitting the search distribution (paper 5)", ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.omar_elites > self.omar_samples:
            from momawb.config import ConfigError
            raise ConfigError(f"OMARConfig.omar_elites = {self.omar_elites} exceeds omar_samples = "
                              f"{self.omar_samples}; lower omar_elites or raise omar_samples")


# ---------------------------------------------------------------------------- losses
def cql_penalty(q_data: torch.Tensor, q_sampled: torch.Tensor, alpha: float, temperature: float) -> torch.Tensor:
    """alpha (T logsumexp_k Q(x, a_k)/T - Q(x, a_data)): q_data (C, B, N), q_sampled (C, K, B, N)."""
    lse = temperature * torch.logsumexp(q_sampled / temperature, dim=1)
    return alpha * (lse - q_data).mean()


@torch.no_grad()
def cem_search(q_fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple, iters: int, samples: int,
               elites: int, mu: float, sigma: float, max_action: float,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy search of argmax_a Q (OMAR): ``q_fn`` maps (K, B, N, A) actions to (K, B, N).
    Returns the best action seen (B, N, A) and its value (B, N)."""
    mean = torch.full(shape, float(mu), device=device)
    std = torch.full(shape, float(sigma), device=device)
    best_a, best_q = torch.zeros(shape, device=device), torch.full(shape[:-1], -torch.inf, device=device)
    for _ in range(iters):
        a = (mean + std * torch.randn(samples, *shape, device=device)).clamp(-max_action, max_action)
        q = q_fn(a)                                                               # (K, B, N)
        top = q.topk(elites, dim=0).indices[..., None].expand(-1, *shape)         # (E, B, N, A)
        elite = a.gather(0, top)
        mean, std = elite.mean(0), elite.std(0, unbiased=False)
        q_max, i = q.max(0)
        a_max = a.gather(0, i[None, ..., None].expand(1, *shape))[0]
        better = q_max > best_q
        best_q = torch.where(better, q_max, best_q)
        best_a = torch.where(better[..., None], a_max, best_a)
    return best_a, best_q


def omar_mimic_loss(pi: torch.Tensor, best_a: torch.Tensor, better: torch.Tensor) -> torch.Tensor:
    """||pi - a*||^2 summed over action dims where the search beat the policy; batch mean, agent sum."""
    return ((pi - best_a).pow(2).sum(-1) * better).mean(0).sum()


# ---------------------------------------------------------------------------- algorithms
class CQL(TD3BC):
    """Independent TD3 learners with CQL critics (ICQL)."""

    def critic_loss(self, q, y, batch, x):
        """TD error + `cql_penalty` over 3K proposals (uniform, noisy pi(x), noisy pi(x'))."""
        cfg = self.cfg
        k, shape = cfg.cql_samples, batch.actions.shape
        with torch.no_grad():
            noisy = lambda a: (a + cfg.cql_noise * torch.randn(k, *shape, device=a.device)).clamp(
                -cfg.max_action, cfg.max_action)
            proposals = torch.cat([
                torch.empty(k, *shape, device=x.device).uniform_(-cfg.max_action, cfg.max_action),
                noisy(self.actor(x)),
                noisy(self.actor(self.encoder(batch.next_obs, batch.next_hist)))])           # (3K, B, N, A)
        q_sampled = self.critic(x.expand(3 * k, *x.shape), proposals)                       # (C, 3K, B, N)
        td = (q - y).pow(2).mean()
        penalty = cql_penalty(q, q_sampled, cfg.cql_alpha, cfg.cql_temperature)
        return td + penalty, {"train/td_loss": td.detach(), "train/cql_penalty": penalty.detach()}


class OMAR(CQL):
    """Independent OMAR learners over CQL critics (IOMAR)."""

    def actor_loss(self, pi, q_pi, batch, x):
        """(1 - c) lambda (-Q) + BC (when bc_alpha > 0) + c `omar_mimic_loss` toward the CEM action."""
        cfg = self.cfg
        x_d = x.detach()
        q1 = lambda a: self.critic(x_d.expand(a.shape[0], *x_d.shape), a)[0]               # (K, B, N)
        best_a, best_q = cem_search(q1, tuple(pi.shape), cfg.omar_iters, cfg.omar_samples, cfg.omar_elites,
                                    cfg.omar_mu, cfg.omar_sigma, cfg.max_action, pi.device)
        better = (best_q > q_pi.detach()).float()
        mimic = omar_mimic_loss(pi, best_a, better)
        # official: (1 - c) lambda (-Q) + BC + c mimic
        loss = td3bc_actor_loss(q_pi, pi, batch.actions, cfg.bc_alpha, 1.0 - cfg.omar_coeff) + cfg.omar_coeff * mimic
        return loss, {"train/omar_mimic": mimic.detach(), "train/omar_better": better.mean().detach()}


def train_icql(config: CQLConfig, dataset, domain, run, *, progress: bool = True, **extra) -> AgentTeam:
    """ICQL (independent learners, CQL critics, -Q actors); returns the decentralised team."""
    return fit_td3(config, dataset, domain, run, False, "ICQL", progress, CQL)


def train_iomar(config: OMARConfig, dataset, domain, run, *, progress: bool = True, **extra) -> AgentTeam:
    """IOMAR (independent OMAR over CQL critics); returns the decentralised team."""
    return fit_td3(config, dataset, domain, run, False, "IOMAR", progress, OMAR)
