"""Where the attention memory's time goes (issue 19): one MAPPO minibatch of `nets.AgentMemory`
at PO Ant sizes (4 agents x 256 histories x 10 steps of 17 features, e_h = 128), forward and
backward, in fp32 and under bf16 autocast; the forward's largest operators; and, with
``--compile``, the same module through ``torch.compile`` (inductor; needs a C++ compiler).

Printed: ms per minibatch (median of ``--reps`` rounds of 10), ratios against fp32 eager and
against the two layouts the memory had before, timed in the same run (the same parameters and
function): `layer_by_layer` (q, k, v projected from the 128-wide embedding, the layer norm's
gain and bias applied to every (B, L, e) row) and `projected` (2026-12-03 to 12-04: q, k, v
from the (o, a) pair through the product of the two weights, F x 3e multiply-adds per step,
the gain and bias folded into the soft keys and the pooled output; the current layout forms no
q, k, v at all); the forward's largest operators (torch's profiler on the module itself, so
the split follows the code); the soft-key layer's rate (the one e x e product left) beside a
plain bf16/fp32 ``torch.bmm`` of the world model's shape measured in the same run (the
machine's matmul peak, for comparison).

Usage: python benchmarks/bench_memory.py [--reps 5] [--compile]
Timings on a shared machine are noisy: read the ratios, and rerun.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

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


def layer_by_layer(m: AgentMemory, hist: torch.Tensor) -> torch.Tensor:
    """The memory's forward as it was first (batched like it): embed, add the positional
    encoding, then q, k, v from the embedding. The first baseline of the ratios printed."""
    x = hist.reshape(-1, m.n, m.length, hist.shape[-1]).transpose(0, 1)
    nb, b = x.shape[0], x.shape[1]
    z = m.embed(x.reshape(nb, b * m.length, -1)).reshape(nb, b, m.length, m.e) + m.pos
    q, k, v = m.qkv(z.reshape(nb, -1, m.e)).reshape(nb, b, m.length, 3 * m.e).chunk(3, -1)
    att = torch.softmax(q @ k.transpose(-1, -2) / m.e ** 0.5, -1)
    z = torch.nn.functional.layer_norm(z + att @ v, (m.e,)) * m.norm_gain + m.norm_bias
    keys = torch.tanh(m.soft_key(z.reshape(nb, -1, m.e)))
    scores = torch.bmm(keys, m.soft_query).reshape(nb, b, m.length)
    pooled = (torch.softmax(scores, -1).unsqueeze(-1) * z).sum(-2)
    return pooled.transpose(0, 1).reshape(*hist.shape[:-3], m.n, m.e)


def projected(m: AgentMemory, hist: torch.Tensor) -> torch.Tensor:
    """The memory's forward as it was before this layout: q, k, v (each (N, B, L, e)) from the
    (o, a) pair through the product of the embedding and projection weights, the attention
    products on them, and the layer norm's gain and bias folded. The second baseline."""
    x = hist.reshape(-1, m.n, m.length, hist.shape[-1]).transpose(0, 1)
    nb, b, e, length = x.shape[0], x.shape[1], m.e, m.length
    x = x.reshape(nb, b * length, -1)
    z = m.embed(x).reshape(nb, b, length, e) + m.pos
    w = torch.bmm(m.embed.weight, m.qkv.weight)
    c = torch.baddbmm(m.qkv.bias, m.embed.bias + m.pos, m.qkv.weight).unsqueeze(1)
    q, k, v = (torch.bmm(x, wi).reshape(nb, b, length, e) + ci for wi, ci in zip(w.split(e, -1), c.split(e, -1)))
    att = torch.softmax(q @ k.transpose(-1, -2) / e ** 0.5, -1)
    u = torch.nn.functional.layer_norm(z + att @ v, (e,))
    gain, bias = m.norm_gain[:, 0], m.norm_bias[:, 0]
    keys = torch.tanh(torch.baddbmm(bias @ m.soft_key.weight, u.reshape(nb, -1, e),
                                    gain.transpose(1, 2) * m.soft_key.weight))
    scores = torch.bmm(keys, m.soft_query).reshape(nb, b, length)
    pooled = (torch.softmax(scores, -1).unsqueeze(-1) * u).sum(-2) * gain + bias
    return pooled.transpose(0, 1).reshape(*hist.shape[:-3], m.n, e)


def forward_ops(m: AgentMemory, hist: torch.Tensor, precision: str, reps: int, top: int = 8) -> list[tuple[str, float]]:
    """The real `AgentMemory.forward` (no grad) under torch's profiler: its ``top`` operators by
    self time, each with its input shapes, in ms per forward."""
    from torch.profiler import ProfilerActivity, profile
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        for _ in range(2):
            m(hist)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(reps):
                m(hist)
    rows = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    return [(f"{e.key} {[list(s) for s in e.input_shapes if s]}", e.self_cpu_time_total / 1e3 / reps)
            for e in rows[:top]]


def soft_key_gflops(m: AgentMemory, precision: str, reps: int) -> float:
    """GFLOP/s of the memory's one 128-wide layer (the soft keys) on one minibatch's rows."""
    u = torch.randn(N, B * L, E)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        t = median_ms(lambda: m.soft_key(u), reps)
    return 2 * N * B * L * E * E / t / 1e6


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
        first = median_ms(forward_backward(m, lambda h: layer_by_layer(m, h), hist, precision), args.reps)
        before = median_ms(forward_backward(m, lambda h: projected(m, h), hist, precision), args.reps)
        ms = median_ms(forward_backward(m, m, hist, precision), args.reps)
        base = base or ms
        print(f"\n  {precision}: forward + backward {ms:.1f} ms ({base / ms:.2f}x fp32 eager); layer by layer "
              f"{first:.1f} ms and projected {before:.1f} ms, so {first / ms:.2f}x and {before / ms:.2f}x faster")
        rate = soft_key_gflops(m, precision, args.reps)
        print(f"    its soft keys ({N} x {B * L} rows, {E} x {E}): {rate:.0f} GFLOP/s "
              f"(plain bmm {peak[precision]:.0f})")
        ops = forward_ops(m, hist, precision, args.reps)
        print("    forward, its largest operators (ms per forward, profiled):")
        for name, t in ops:
            print(f"      {t:6.2f}  {name}")
        if args.compile:
            compiled = torch.compile(m)
            t0 = time.perf_counter()
            forward_backward(m, compiled, hist, precision)()
            ctime = time.perf_counter() - t0
            cms = median_ms(forward_backward(m, compiled, hist, precision), args.reps)
            print(f"    torch.compile: {cms:.1f} ms ({ms / cms:.2f}x eager {precision}; first call {ctime:.0f} s, "
                  "less when inductor's on-disk cache already holds the kernels)")


if __name__ == "__main__":
    main()
