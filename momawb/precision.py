"""Opt-in numerics for speed: the ``precision`` and ``fused_adam`` fields of the world model's and
MOMA-PPO's configs (both recorded in the run's config, so runs of each kind never share a folder).

* ``precision="fp32"`` (default): plain float32 everywhere; the numbers every test and table use.
* ``"bf16"``: forward (and so backward) passes under ``torch.autocast`` with bfloat16 (8 bits
  of mantissa): the whole ensemble in the world model, the agents' encoder (the attention
  memory) in MOMA-PPO. Outputs are cast back to float32 before any loss, log-probability,
  variance or ensemble statistic. On CPUs with AVX-512 BF16 / AMX the matmuls run several times
  faster (`benchmarks/bench_speed.py` measures it, and the validation NLL beside fp32's).
* ``"tf32"``: float32 tensors, matmuls allowed to use TensorFloat-32 (CUDA Ampere and later;
  ``torch.set_float32_matmul_precision("high")``) for the duration of the step. A no-op on CPU.

The default optimiser is `flat_adam.FlatAdam`: torch's Adam bit for bit, with each param group
in one flat buffer (a step is a few tensor operations instead of a few per parameter tensor).
``fused_adam=True`` builds ``torch.optim.Adam(..., fused=True)``: one kernel for all parameters
(CPU and CUDA). It computes Adam's update in another order than torch's default (foreach)
implementation, so results match it to rounding, not bit for bit.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch

from momawb.cuda_graphs import capturing
from momawb.flat_adam import FlatAdam

__all__ = ["PRECISIONS", "autocast", "adam"]

PRECISIONS = ("fp32", "bf16", "tf32")


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """The context a forward pass runs in for ``precision`` on ``device`` (see the module doc).
    Raises ValueError for an unknown precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dev = torch.device(device).type
    if precision == "bf16":
        # autocast's cache of casted weights must be off while a CUDA graph is captured (a graph
        # would replay casts of the capture-time weights); `momawb.cuda_graphs`
        with torch.autocast(dev, dtype=torch.bfloat16, cache_enabled=not capturing(dev)):
            yield
    elif precision == "tf32" and dev == "cuda":
        before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(before)
    else:
        yield


def adam(params: Iterable, lr: float, fused: bool = False, capturable: bool = False) -> torch.optim.Adam:
    """Adam over ``params`` (tensors or param-group dicts). By default `flat_adam.FlatAdam`:
    torch's Adam bit for bit (tests/test_precision.py), each param group in one flat buffer, so
    a step costs a few operations instead of a few per tensor; the parameters become views of
    that buffer (build the optimiser after moving the model). ``fused`` picks torch's
    single-kernel implementation instead (equal to rounding, not bit for bit). ``capturable``
    (for `momawb.cuda_graphs`; CUDA; needs ``fused``): torch's fused Adam with its step count on
    the device, so that a CUDA graph can replay its step (FlatAdam's step count is a Python
    number, which a graph would freeze). torch's capturable multi-tensor Adam is not offered: on
    an H200 (torch 2.11) it reached a validation NLL of 0.434 and 0.431 where FlatAdam reached
    0.388 and 0.381 and fused Adam 0.384 and 0.406 (world model, two seeds, 500 steps,
    eager and replayed alike); that gap is not explained."""
    if capturable:
        if not fused:
            raise ValueError("a capturable Adam (cuda_graph: true) is torch's fused Adam: set fused_adam: true too")
        return torch.optim.Adam(params, lr=lr, fused=True, capturable=True)
    return torch.optim.Adam(params, lr=lr, fused=True) if fused else FlatAdam(params, lr=lr)
