"""Speed of the stacked world-model ensemble (momawb/world_model.py) against Python loops.

1. training throughput (samples/s = members x batch x steps / s) of `EnsembleTrainer.update`
   against 7 separate ``nn.Sequential`` members with 7 Adams updated in a loop (the released
   code's layout), at hidden widths 200 and 1024 (4 hidden layers, Ant-sized inputs);
2. achieved GFLOP/s of the stacked update at width 1024 (matmul FLOPs: forward 2, backward 4
   per multiply-add) against a measured fp32 ``torch.mm`` peak on this machine;
3. `WorldModel.step` throughput on 2000 states against a per-member, per-sample loop.

Usage: python benchmarks/bench_world_model.py [--steps 10] [--threads N] [--device cpu|cuda]
Timings on a shared machine are noisy: take the ratios, not the absolute numbers, and rerun.
"""
import argparse
import tempfile
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from momawb.datasets import Dataset
from momawb.domains import Domain
from momawb.runs import Run
from momawb.model_trainer import EnsembleTrainer
from momawb.world_model import WorldModel, WorldModelConfig, ensemble_uncertainty

S, N_AGENTS, ACT = 27, 4, 2          # Ant FO sizes (PAPER.md section 6)


def domain() -> Domain:
    return Domain(name="bench", task="ant-like", n_agents=N_AGENTS, state_dim=S,
                  obs_index=np.tile(np.arange(S), (N_AGENTS, 1)), act_dim=ACT, n_actions=None,
                  episode_length=1000, reference_returns=(0.0, 1.0))


def dataset(n: int = 20000) -> Dataset:
    g = np.random.default_rng(0)
    s, a = g.normal(size=(n, S)), g.uniform(-1, 1, (n, N_AGENTS * ACT))
    return Dataset(s, a, g.normal(size=n), s + 0.1 * g.normal(size=(n, S)), np.zeros(n), np.zeros(n))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, n: int, device, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / n


def loop_baseline(tr: EnsembleTrainer, cfg: WorldModelConfig, device):
    """The released code's layout: one nn.Sequential + Adam per member, updated in a loop."""
    x, y, d = tr.train
    dims = (x.shape[1], *cfg.hidden, 2 * (S + 1) + 1)
    members = []
    for _ in range(cfg.n_members):
        layers = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(dims) - 2 else [])
        net = nn.Sequential(*layers).to(device)
        members.append((net, torch.optim.Adam(net.parameters(), lr=cfg.lr)))
    rng = np.random.default_rng(0)

    def update():
        for net, opt in members:
            idx = torch.as_tensor(rng.integers(0, len(x), cfg.batch_size), device=device)
            out = net(x[idx])
            mean, logvar, logit = out[:, :S + 1], out[:, S + 1:-1].clamp(-10, 0.5), out[:, -1]
            loss = (0.5 * ((y[idx] - mean) ** 2 * torch.exp(-logvar) + logvar)).mean() + \
                F.binary_cross_entropy_with_logits(logit, d[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            loss.item()
    return update, members


def matmul_peak(device, n: int = 2048) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    t = timed(lambda: torch.mm(a, b), 5 if device.type == "cpu" else 50, device)
    return 2 * n ** 3 / t / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10, help="timed updates per width (CPU: keep small)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    print(f"device {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads; shared machines are noisy")
    ds, dom = dataset(), domain()
    root = tempfile.mkdtemp()
    peak = matmul_peak(dev)
    print(f"fp32 matmul peak (2048^3 mm): {peak:8.1f} GFLOP/s")
    for width in (200, 1024):
        cfg = WorldModelConfig(hidden=(width,) * 4, device=str(dev))
        tr = EnsembleTrainer(ds, dom, cfg, Run(f"bench-{width}", cfg, root=root, device=str(dev)), dev)
        steps = args.steps * (10 if width == 200 else 1) * (20 if dev.type == "cuda" else 1)
        t_stack = timed(lambda: tr.update(0), steps, dev)
        loop, _ = loop_baseline(tr, cfg, dev)
        t_loop = timed(loop, steps, dev)
        n = cfg.n_members * cfg.batch_size
        print(f"width {width:5d}: stacked {n / t_stack:10.0f} samples/s   loop {n / t_loop:10.0f} samples/s   "
              f"stacked/loop = {t_loop / t_stack:5.2f}x")
        if width == 1024:
            dims = (tr.train[0].shape[1], *cfg.hidden, 2 * (S + 1) + 1)
            flops = 6 * n * sum(a * b for a, b in zip(dims[:-1], dims[1:]))
            print(f"  stacked update at width 1024: {flops / t_stack / 1e9:8.1f} GFLOP/s = "
                  f"{100 * flops / t_stack / 1e9 / peak:5.1f} % of the measured matmul peak")
            bench_step(tr, cfg, dom, dev)


def bench_step(tr: EnsembleTrainer, cfg: WorldModelConfig, dom: Domain, dev) -> None:
    model = WorldModel(dom, cfg, tr.ensemble, tr.stats, list(range(cfg.n_elites)), [0.0] * cfg.n_members, dev)
    g = torch.Generator(dev).manual_seed(0)
    s, a = torch.randn(2000, S, device=dev), torch.rand(2000, N_AGENTS, ACT, device=dev) * 2 - 1
    t_step = timed(lambda: model.step(s, a, generator=g), 5 if dev.type == "cpu" else 50, dev)
    # per-member, per-sample loop (the released code loops over elites; here also over samples)
    elites = [tr.ensemble.subset([m]) for m in range(cfg.n_elites)]
    st, m_loop = model.stats, 50 if dev.type == "cpu" else 200

    def loop():
        with torch.no_grad():
            for i in range(m_loop):
                x = (torch.cat([s[i:i + 1], a[i:i + 1].flatten(1)], -1) - st["in_mean"]) / st["in_std"]
                preds = [e(x[None])[0][0, 0] * st["out_std"] + st["out_mean"] for e in elites]
                p = torch.stack(preds)[:, None]                     # (N, 1, S+1)
                ensemble_uncertainty(p[..., :-1] + s[i:i + 1], p[..., -1])
    t_loop = timed(loop, 1, dev, warmup=1) / m_loop
    print(f"step() on 2000 states: {2000 / t_step:10.0f} states/s   per-member per-sample loop "
          f"{1 / t_loop:8.0f} states/s   batched/loop = {2000 * t_loop / t_step:7.1f}x")


if __name__ == "__main__":
    main()
