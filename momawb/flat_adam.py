"""Adam over flat buffers: torch's Adam bit for bit, in eight tensor operations per param group.

Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Algorithm 1, computed
exactly as ``torch.optim.Adam`` (2.13, default hyperparameters: no weight decay, amsgrad or
maximize) computes it: ``m <- lerp(m, g, 1 - beta1)``, ``v <- beta2 v + (1 - beta2) g^2``,
``p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``.

Why: momawb's networks are small (32-256 wide) and an optimiser step over their dozens of small
tensors costs its per-tensor dispatches, not its arithmetic. ``torch.optim.Adam``'s multi-tensor
(``foreach``) path runs each of its operations once per tensor on CPU; `FlatAdam` moves each
param group's parameters into one contiguous buffer (the parameters become views of it, so the
modules see every update), keeps the two moments and a gradient buffer beside it, and runs
each operation once per group (gather the gradients, lerp, mul, addcmul, sqrt, div, add,
addcdiv). Elementwise operations give the same bits on a view as on the tensor, so the
parameters are torch's to the last bit (tests/test_precision.py). Measured on this
repository's sizes (`benchmarks/bench_adam.py`, 1 thread): a step is 1.7-3.2x cheaper for the
game's, Reacher's and Ant's policy and critic networks, 1.0x and 1.2x for the world model at
4 x 200 and 4 x 1024 (where ``fused_adam``, one pass instead of several, is faster still).

The checkpoint format is torch's (``state_dict`` per parameter: ``step``, ``exp_avg``,
``exp_avg_sq``), so a state saved by ``torch.optim.Adam`` resumes here and the other way round.

The arithmetic goes through the same foreach overloads torch's Adam calls (on one-tensor lists),
so the kernels, and the rounding, are torch's on CUDA too; a step reads nothing back to the host
(the bias corrections come from a Python step count). The parameters' version counters are
bumped, so autograd still refuses a backward through a graph saved before the step.

Raises ValueError for options it does not compute (weight decay, amsgrad, maximize, fused,
capturable, differentiable; also from a loaded state) and for a parameter twice in one group;
RuntimeError at ``step`` when a parameter no longer lives in its buffer (the module was moved
with ``.to()``, its tensors replaced, or another FlatAdam took it after this one was built).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import torch

__all__ = ["FlatAdam"]


class _Flat:
    """One param group's buffers: parameters (the group's tensors are views of it), the two
    moments, the gathered gradient and a scratch buffer; and each parameter's step count."""

    def __init__(self, params: list[torch.Tensor]):
        first = params[0] if params else torch.empty(0)
        for p in params:
            if p.device != first.device or p.dtype != first.dtype or p.is_sparse:
                raise ValueError("FlatAdam: a param group's parameters must share one device and dtype "
                                 f"(got {first.dtype} on {first.device} and {p.dtype} on {p.device}); "
                                 "put them in separate groups")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("FlatAdam: a parameter appears twice in one param group")
        self.params = params
        sizes = [p.numel() for p in params]
        n, kw = sum(sizes), {"device": first.device, "dtype": first.dtype}
        self.data = torch.empty(n, **kw)
        self.exp_avg, self.exp_avg_sq = torch.zeros(n, **kw), torch.zeros(n, **kw)
        self.grad, self.scratch = torch.empty(n, **kw), torch.empty(n, **kw)
        self.slices, start = [], 0
        with torch.no_grad():
            for p, k in zip(params, sizes):
                self.slices.append(slice(start, start + k))
                self.data[start:start + k].copy_(p.reshape(-1))
                p.data = self.data[start:start + k].view_as(p)
                start += k
        self.ptrs = [p.data_ptr() for p in params]
        self.steps = [0] * len(params)

    def view(self, buf: torch.Tensor, i: int) -> torch.Tensor:
        return buf[self.slices[i]].view_as(self.params[i])

    def check(self) -> None:
        if any(p.data_ptr() != ptr for p, ptr in zip(self.params, self.ptrs)):
            raise RuntimeError("FlatAdam: a parameter no longer lives in the optimiser's buffer: the module was "
                               "moved with .to(), its tensors were replaced, or another FlatAdam took the parameter "
                               "after this one was built; build the optimiser after moving the model, one per "
                               "parameter")


#: torch Adam options FlatAdam computes, at the values it computes them for
_DEFAULTS = {"weight_decay": 0, "amsgrad": False, "maximize": False, "capturable": False, "differentiable": False,
             "decoupled_weight_decay": False}


def _check_options(group: dict) -> None:
    """Raises ValueError for a param group with an option FlatAdam does not compute."""
    bad = sorted(k for k, v in _DEFAULTS.items() if group.get(k, v) != v) + (["fused"] if group.get("fused") else [])
    if bad:
        raise ValueError(f"FlatAdam computes plain Adam, without {', '.join(bad)}; use torch.optim.Adam for those")


class FlatAdam(torch.optim.Adam):
    """``torch.optim.Adam(params, lr)`` with each param group flattened (module docstring).

    ``params``: tensors or param-group dicts (each may set its own ``lr``). The parameters
    become views of the group's buffer when the optimiser is built. ``load_state_dict`` takes a
    state saved by `FlatAdam` or by ``torch.optim.Adam`` (torch's method ends in `__setstate__`,
    which fills the buffers; a state with options FlatAdam does not compute raises ValueError).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3):
        self._flats: list[_Flat] = []
        super().__init__(params, lr=lr, foreach=True)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        _check_options(self.param_groups[-1])
        self._flats.append(_Flat(self.param_groups[-1]["params"]))

    # -------------------------------------------------------------- the step
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, flat in zip(self.param_groups, self._flats):
            flat.check()
            grads = [p.grad for p in flat.params]
            has = [g is not None for g in grads]
            if not any(has):
                continue
            beta1, beta2 = group["betas"]
            lr, eps = group["lr"], group["eps"]
            if all(has) and len(set(flat.steps)) == 1:        # the usual case: one pass over each buffer
                torch.cat([g.reshape(-1) for g in grads], out=flat.grad)
                t = flat.steps[0] + 1
                flat.steps = [t] * len(flat.params)
                self._adam(flat.data, flat.grad, flat.exp_avg, flat.exp_avg_sq, flat.scratch,
                           t, lr, beta1, beta2, eps)
                # the views' version counters are their own: bump them, so that autograd still
                # refuses a backward through a graph that saved the old values (as with torch's Adam)
                torch.autograd.graph.increment_version(flat.params)
            else:                                             # torch skips parameters without a gradient
                for i, g in enumerate(grads):
                    if g is None:
                        continue
                    flat.steps[i] += 1
                    self._adam(flat.params[i], g, flat.view(flat.exp_avg, i), flat.view(flat.exp_avg_sq, i),
                               torch.empty_like(g), flat.steps[i], lr, beta1, beta2, eps)
        return loss

    @staticmethod
    def _adam(param, grad, exp_avg, exp_avg_sq, scratch, t: int, lr: float, beta1: float, beta2: float,
              eps: float) -> None:
        """One Adam step in place, through the same foreach overloads as torch's Adam (its
        multi-tensor path, on one-tensor lists): the same kernels, so the same rounding, on CPU
        and on CUDA (where dividing a tensor by a plain number would multiply by its reciprocal)."""
        torch._foreach_lerp_([exp_avg], [grad], 1 - beta1)
        torch._foreach_mul_([exp_avg_sq], beta2)
        torch._foreach_addcmul_([exp_avg_sq], [grad], [grad], 1 - beta2)
        bias_correction1 = 1 - beta1 ** float(t)
        bias_correction2 = 1 - beta2 ** float(t)
        scratch.copy_(exp_avg_sq)
        torch._foreach_sqrt_([scratch])
        torch._foreach_div_([scratch], [bias_correction2 ** 0.5])
        torch._foreach_add_([scratch], eps)
        torch._foreach_addcdiv_([param], [exp_avg], [scratch], [(lr / bias_correction1) * -1])

    # -------------------------------------------------------------- torch's checkpoint format
    def state_dict(self) -> dict:
        """torch's Adam state: per parameter that has stepped, ``step`` (a float32 tensor),
        ``exp_avg`` and ``exp_avg_sq`` (copies of the buffers' slices)."""
        self._sync_state()
        out = super().state_dict()
        self.state.clear()          # the buffers are the state; the copies live in `out` only
        return out

    def _sync_state(self) -> None:
        """Fill ``self.state`` in torch's layout from the buffers (copies)."""
        for flat in self._flats:
            for i, p in enumerate(flat.params):
                if flat.steps[i] > 0:
                    self.state[p] = {"step": torch.tensor(float(flat.steps[i]), device="cpu"),   # as torch
                                     "exp_avg": flat.view(flat.exp_avg, i).clone(),
                                     "exp_avg_sq": flat.view(flat.exp_avg_sq, i).clone()}

    def _load_flats(self) -> None:
        """Move ``self.state`` (torch's per-parameter layout) into the buffers and clear it."""
        with torch.no_grad():
            for flat in self._flats:
                for i, p in enumerate(flat.params):
                    st = self.state.get(p, {})
                    flat.steps[i] = int(st["step"]) if "step" in st else 0
                    for key, buf in (("exp_avg", flat.exp_avg), ("exp_avg_sq", flat.exp_avg_sq)):
                        if key in st:
                            flat.view(buf, i).copy_(st[key])
                        else:
                            flat.view(buf, i).zero_()
        self.state.clear()

    def __getstate__(self) -> dict:          # pickling / deepcopy: the state in torch's layout
        self._sync_state()
        out = {**super().__getstate__(), "state": defaultdict(dict, self.state)}
        self.state.clear()
        return out

    def __setstate__(self, state: dict) -> None:  # unpickling, deepcopy and load_state_dict
        super().__setstate__(state)
        for group in self.param_groups:
            _check_options(group)
        self._flats = [_Flat(group["params"]) for group in self.param_groups]
        self._load_flats()
