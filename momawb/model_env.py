"""Environments behind one interface for MOMA-PPO rollouts (PAPER.md section 3, Table 5).

A *model env* advances a batch of global states by one step given per-agent actions and
returns a `StepOut`::

    env.step(states (B, S), actions (B, N, act_dim), generator=None, **sim_state) -> StepOut

The learned world model (``momawb.world_model.WorldModel.step``) and the ground-truth
simulator adapter `SimulatorEnv` both return this type, so the MOMA-PPO trainer does not care
which one it plans in. Simulators of MuJoCo domains need the exact simulator state to restart
from a dataset state: `SimulatorEnv.step` takes ``qpos``/``qvel`` (B, nq/nv) and returns the
state after the step in ``StepOut.qpos``/``qvel``, which the trainer threads through the
rollout. The learned model ignores them (it never receives them).

Uncertainties (``eps_r``, ``eps_g``, ``aleatoric``) are returned *unclamped*: the trainer
tests ``eps_g >= l_eps`` for the adaptive rollout length before it clamps them for the
penalty (DESIGN.md, "known pitfalls").
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

__all__ = ["StepOut", "SimulatorEnv", "OnDevice"]


@dataclass
class StepOut:
    """One batched model step; every tensor has leading batch size B."""

    next_states: torch.Tensor    # (B, S)  s_hat' (one elite drawn uniformly per sample)
    rewards: torch.Tensor        # (B,)    r_bar, mean over elites, clipped to the data's range
    not_terminal: torch.Tensor   # (B,)    bool, f_bar: majority vote of the elites
    eps_r: torch.Tensor          # (B,)    variance of the elites' rewards (N-1 denominator)
    eps_g: torch.Tensor          # (B,)    Frobenius norm of the elites' covariance of [s', r]
    aleatoric: torch.Tensor      # (B,)    max over elites of ||predicted std|| (MOPO penalty)
    clipped: torch.Tensor | None = None  # (B,) share of s_hat' coordinates the bounding box clipped (model only)
    qpos: torch.Tensor | None = None   # (B, nq) simulator state after the step (ground truth only)
    qvel: torch.Tensor | None = None   # (B, nv)


class SimulatorEnv:
    """The ground-truth simulator as a model env (MOMA-PPO with a "perfect" model, Table 5).

    Wraps ``domain.simulator()`` (numpy, restartable from dataset states) so that it speaks
    torch on ``device`` and returns a `StepOut` with zero uncertainties: rollouts then end only
    at the horizon k or at a true terminal, and no penalty is applied.
    """

    def __init__(self, domain, device: torch.device | str = "cpu", **sim_kwargs):
        self.domain = domain
        self.device = torch.device(device)
        self.sim = domain.simulator(**sim_kwargs)

    @staticmethod
    def _np(x):
        return None if x is None else x.detach().cpu().numpy()

    def _t(self, x, dtype=torch.float32):
        return None if x is None else torch.as_tensor(np.asarray(x), dtype=dtype, device=self.device)

    @torch.no_grad()
    def step(self, states: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None,
             qpos: torch.Tensor | None = None, qvel: torch.Tensor | None = None) -> StepOut:
        b = states.shape[0]
        assert states.dim() == 2 and actions.shape[:2] == (b, self.domain.n_agents), \
            f"expected states (B, S) and actions (B, N, act_dim), got {tuple(states.shape)}, {tuple(actions.shape)}"
        out = self.sim.step(self._np(states), self._np(actions), qpos=self._np(qpos), qvel=self._np(qvel))
        zeros = torch.zeros(b, device=self.device)
        return StepOut(next_states=self._t(out.next_states), rewards=self._t(out.rewards),
                       not_terminal=~self._t(out.terminals, torch.bool), eps_r=zeros, eps_g=zeros.clone(),
                       aleatoric=zeros.clone(), qpos=self._t(out.qpos, torch.float64),
                       qvel=self._t(out.qvel, torch.float64))


class OnDevice:
    """A model env called on its own device, its `StepOut` brought back to the agents' device.

    ``OnDevice(env, env_device, device).step(states, actions, generator, **sim)`` moves the
    inputs (on ``device``) to ``env_device``, calls ``env.step`` and moves every tensor of the
    result back; when the two devices are the same it calls ``env.step`` directly (no copies).
    MOMA-PPO uses it when the world model was fitted on another device than the agents train on.
    """

    def __init__(self, env, env_device: torch.device | str, device: torch.device | str):
        self.env, self.same = env, torch.device(env_device) == torch.device(device)
        self.env_device, self.device = torch.device(env_device), torch.device(device)

    def step(self, states, actions, generator=None, **sim) -> StepOut:
        if self.same:
            return self.env.step(states, actions, generator, **sim)
        to = lambda t, dev: None if t is None else t.to(dev)  # noqa: E731
        out = self.env.step(to(states, self.env_device), to(actions, self.env_device), generator,
                            **{k: to(v, self.env_device) for k, v in sim.items()})
        return StepOut(**{f.name: to(getattr(out, f.name), self.device) for f in fields(StepOut)})
