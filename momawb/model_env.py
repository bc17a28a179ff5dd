"""Environments behind one interface for MOMA-PPO rollouts (PAPER.md section 3, Table 5).

A *model env* advances a batch of global states by one step given per-agent actions and
returns a `StepOut`. The learned world model (``momawb.world_model.WorldModel.step``) and
the ground-truth simulator adapter both return this type, so the MOMA-PPO trainer does not
care which one it plans in.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["StepOut"]


@dataclass
class StepOut:
    """One batched model step; every tensor has leading batch size B."""

    next_states: torch.Tensor    # (B, S)  s_hat' (one elite drawn uniformly per sample)
    rewards: torch.Tensor        # (B,)    r_bar, mean over elites, clipped to the data's range
    not_terminal: torch.Tensor   # (B,)    bool, f_bar: majority vote of the elites
    eps_r: torch.Tensor          # (B,)    variance of the elites' rewards (N-1 denominator)
    eps_g: torch.Tensor          # (B,)    Frobenius norm of the elites' covariance of [s', r]
    aleatoric: torch.Tensor      # (B,)    max over elites of ||predicted std|| (MOPO penalty)
