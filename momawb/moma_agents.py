"""MOMA-PPO's networks (PAPER.md sections 3-4): per-agent policies and values on a shared
encoder (observations, and with ``memory`` the attention memory over the last L (o, a) pairs),
and the QMIX-style mixer of the team value.

`momawb.moma_ppo` trains them (rollouts, GAE, the MAPPO update); `momawb.rollouts` acts with
them. The building blocks are `momawb.nets` (``AgentEncoder`` / ``NormalizedEncoder``,
``AgentPolicy``, ``AgentMLP``, ``Mixer``, ``RunningNorm``, ``PolicyTeam``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from momawb.nets import AgentEncoder, AgentMLP, AgentPolicy, Mixer, NormalizedEncoder, PolicyTeam, RunningNorm
from momawb.precision import autocast

if TYPE_CHECKING:
    from momawb.moma_ppo import MomaPPOConfig

__all__ = ["MomaPPOAgents"]


class MomaPPOAgents(nn.Module):
    """Per-agent policies and values on a shared encoder, plus the QMIX-style mixer.

    ``x = encoder(obs (B.., N, O), hist (B.., N, L, F) | None) -> (B.., N, D)``;
    ``policy``: `nets.AgentPolicy` on x; ``value(x, states (B.., S)) -> (B..,)`` =
    ``sum_i w_i(s) V_i(x^i) + b(s)`` (section 3). Policy and value share the memory module.
    Opt-in (`MomaPPOConfig`): ``obs_norm`` standardises x's observations and the mixer's state;
    ``value_norm`` makes `value` predict standardised returns (`returns` de-normalises).
    """

    def __init__(self, domain, cfg: MomaPPOConfig):
        super().__init__()
        n = domain.n_agents
        self.feature_dim = domain.obs_dim + (domain.n_actions if domain.discrete else domain.act_dim)
        enc_args = (n, domain.obs_dim, self.feature_dim, cfg.memory, cfg.memory_length, cfg.embed_dim)
        self.encoder = NormalizedEncoder(*enc_args, clip=cfg.norm_clip) if cfg.obs_norm else AgentEncoder(*enc_args)
        self.policy = AgentPolicy(n, self.encoder.out_dim, domain.act_dim, domain.n_actions, cfg.hidden)
        if cfg.init_log_std != 0.0 and not domain.discrete:
            with torch.no_grad():
                self.policy.net.net.layers[-1].bias[..., domain.act_dim:] = cfg.init_log_std
        self.values = AgentMLP(n, self.encoder.out_dim, 1, cfg.hidden)
        self.mixer = Mixer(domain.state_dim, n, cfg.hidden)
        if cfg.mixer_init_scale != 1.0:
            with torch.no_grad():
                self.mixer.net[-1].weight.mul_(cfg.mixer_init_scale)
                self.mixer.net[-1].bias.mul_(cfg.mixer_init_scale)
        self.state_norm = RunningNorm((domain.state_dim,), cfg.norm_clip) if cfg.obs_norm else None
        self.value_norm = RunningNorm(()) if cfg.value_norm else None
        self.precision = cfg.precision

    def features(self, obs: torch.Tensor, hist: torch.Tensor | None) -> torch.Tensor:
        """x = encoder(obs, hist) in the config's ``precision``, returned as float32."""
        with autocast(self.precision, obs.device):
            x = self.encoder(obs, hist)
        return x.float()

    def value(self, x: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """The team value (standardised when ``value_norm``)."""
        if self.state_norm is not None:
            states = self.state_norm(states)
        return self.mixer(self.values(x)[..., 0], states)

    def returns(self, value: torch.Tensor) -> torch.Tensor:
        """`value`'s output in return units."""
        return value if self.value_norm is None else self.value_norm.denormalize(value)

    def critic_parameters(self) -> list[nn.Parameter]:
        return [*self.values.parameters(), *self.mixer.parameters()]

    def team(self) -> PolicyTeam:
        return PolicyTeam(self.encoder, self.policy)
