"""IBC: independent behaviour cloning (PAPER.md section 5, Tables 3, 4a, 4b).

Each agent fits its own policy pi_i(a^i | x^i) to its actions in the dataset by maximum
likelihood, from its own observation (and, under partial observability, the memory
embedding of its history). On a mixture of conventions each agent clones its *marginal*
behaviour, which is why IBC fails on the unfavorable Coordination Game (Table 3: 0).

Borrowed: `nets.AgentPolicy` (categorical or state-dependent Gaussian, stacked over agents),
`common.build_encoder`, `common.ReplaySampler`, `common.AgentTeam`, `common.fit`.

Deliberate deviation: the official code clones a tanh-squashed Gaussian; here the shared
Gaussian is unsquashed and greedy actions are clipped to the action bounds.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from momawb.baselines.common import (AgentTeam, BaselineConfig, Batch, Learner, ReplaySampler, adam, build_encoder,
                                     fit)
from momawb.config import register
from momawb.nets import AgentPolicy

__all__ = ["BCConfig", "bc_loss", "BC", "build_bc", "train"]


@register("ibc")
@dataclass
class BCConfig(BaselineConfig):
    """IBC: only the common fields (PAPER.md section 5); ``gamma`` and ``tau`` are unused."""


def bc_loss(log_prob: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the dataset actions, summed over agents, averaged over the batch."""
    return -log_prob.sum(-1).mean()


class BC(Learner):
    """Independent behaviour cloning: encoder (memory) + per-agent policies."""

    def __init__(self, config: BCConfig, encoder, policy: AgentPolicy):
        self.cfg, self.encoder, self.policy = config, encoder, policy
        self.opt = {"policy": adam(policy, config.lr), "memory": adam(encoder, config.memory_lr)}
        self.n_updates = 0

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.zero_grad()
        log_prob = self.policy.log_prob(self.encoder(batch.obs, batch.hist), batch.actions)   # (B, N)
        loss = bc_loss(log_prob)
        loss.backward()
        for o in self.opt.values():
            if o is not None:
                o.step()
        self.n_updates += 1
        return {"train/bc_loss": loss.detach()}

    def modules(self) -> dict:
        return {"encoder": self.encoder, "policy": self.policy}

    def team(self) -> AgentTeam:
        return AgentTeam(self.encoder, self.policy)


def build_bc(config: BCConfig, domain, device: torch.device | str = "cpu") -> BC:
    encoder = build_encoder(domain, config).to(device)
    policy = AgentPolicy(domain.n_agents, encoder.out_dim, domain.act_dim, domain.n_actions, config.hidden).to(device)
    return BC(config, encoder, policy)


def train(config: BCConfig, dataset, domain, run, *, progress: bool = True, **extra) -> AgentTeam:
    """IBC on ``dataset``; returns the decentralised team."""
    algo = build_bc(config, domain, run.device)
    sampler = ReplaySampler(dataset, domain, run.device, run.np_rng, config.memory, config.memory_length)
    team = algo.team()
    fit(run, algo, config, sampler, domain, team, desc="IBC", progress=progress)
    return team
