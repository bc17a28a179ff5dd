"""Where the attention memory's time goes (issue 19): one MAPPO minibatch of `nets.AgentMemory`
at PO Ant sizes (4 agents x 256 histories x 10 steps of 17 features, e_h = 128), forward and
backward, in fp32 and under bf16 autocast; the forward split into its steps; and, with
``--compile``, the same module through ``torch.compile`` (inductor; needs a C++ compiler).

Printed: ms per minibatch (median of ``--reps`` rounds of 10), ratios against fp32 eager, and
the GFLOP/s its three projections reach against a plain bf16/fp32 ``torch.bmm`` of the
world model's shape measured in the same run (the machine's matmul peak for comparison).

Usage: python benchmarks/bench_memory.py [--reps 5] [--compile]
Timings on a shared machine are noisy: read the ratios, and rerun.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from torch.nn import functional as F

from momawb.nets import AgentMemory

N, B, L, FEAT, E = 4, 256, 10, 17, 128


def median_ms(fn, reps: int, inner: int = 10) -> float:
    for _ in range(2):
        fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        out.append((time.perf_counter() - t) / inner * 1e3)
    return float(np.median(out))


def forward_backward(memory, forward, hist, precision: str):
    def step():
        memory.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            y = forward(hist)
        y.float().square().mean().backward()
    return step


def forward_steps(m: AgentMemory, hist: torch.Tensor, precision: str, reps: int) -> dict[str, float]:
    """ms of each step of `AgentMemory.forward`, rerun one step at a time (no grad)."""
    x = hist.reshape(-1, N, L, FEAT).transpose(0, 1).reshape(N, B * L, FEAT)
    out: dict[str, float] = {}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        z = m.embed(x).reshape(N, B, L, E) + m.pos
        q, k, v = m.qkv(z.reshape(N, -1, E)).reshape(N, B, L, 3 * E).chunk(3, -1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(E), -1)
        av = att @ v
        zn = F.layer_norm(z + av, (E,)) * m.norm_gain + m.norm_bias
        keys = torch.tanh(m.soft_key(zn.reshape(N, -1, E)))
        steps = {
            "embed + positions": lambda: m.embed(x).reshape(N, B, L, E) + m.pos,
            "q, k, v projection": lambda: m.qkv(z.reshape(N, -1, E)),
            "q k^T and softmax": lambda: torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(E), -1),
            "attention x v": lambda: att @ v,
            "skip + layer norm + gain": lambda: F.layer_norm(z + av, (E,)) * m.norm_gain + m.norm_bias,
            "soft keys (linear + tanh)": lambda: torch.tanh(m.soft_key(zn.reshape(N, -1, E))),
            "scores + softmax pooling": lambda: (torch.softmax(torch.bmm(keys, m.soft_query).reshape(N, B, L), -1)
                                                 .unsqueeze(-1) * zn).sum(-2),
        }
        for name, fn in steps.items():
            out[name] = median_ms(fn, reps)
    return out


def bmm_gflops(dtype: torch.dtype, reps: int, shape=(7, 256, 1024, 1024)) -> float:
    e, b, i, o = shape
    x, w = torch.randn(e, b, i, dtype=dtype), torch.randn(e, i, o, dtype=dtype)
    return 2 * e * b * i * o / median_ms(lambda: torch.bmm(x, w), reps) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(memory) (slow to compile)")
    args = ap.parse_args()
    torch.manual_seed(0)
    m = AgentMemory(N, FEAT, L, E)
    hist = torch.randn(B, N, L, FEAT)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; AgentMemory, {N} agents x {B} histories "
          f"x {L} steps, e_h = {E}; medians of {args.reps} x 10")
    peak = {p: bmm_gflops(torch.float32 if p == "fp32" else torch.bfloat16, args.reps) for p in ("fp32", "bf16")}
    print("  plain bmm 7 x (256 x 1024 x 1024): " + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in peak.items()))
    base = None
    for precision in ("fp32", "bf16"):
        ms = median_ms(forward_backward(m, m, hist, precision), args.reps)
        base = base or ms
        print(f"\n  {precision}: forward + backward {ms:.1f} ms ({base / ms:.2f}x fp32 eager)")
        steps = forward_steps(m, hist, precision, args.reps)
        for name, t in steps.items():
            print(f"    forward: {name:28s} {t:6.2f} ms")
        proj = 2 * N * B * L * E * (3 * E + E)            # q, k, v and soft-key products, forward
        t_proj = steps["q, k, v projection"] + steps["soft keys (linear + tanh)"]
        print(f"    projections (q, k, v, soft keys): {proj / t_proj / 1e6:.0f} GFLOP/s "
              f"(plain bmm {peak[precision]:.0f})")
        if args.compile:
            compiled = torch.compile(m)
            t0 = time.perf_counter()
            forward_backward(m, compiled, hist, precision)()
            ctime = time.perf_counter() - t0
            cms = median_ms(forward_backward(m, compiled, hist, precision), args.reps)
            print(f"    torch.compile: {cms:.1f} ms ({ms / cms:.2f}x eager {precision}; first call {ctime:.0f} s)")


if __name__ == "__main__":
    main()
