"""Gradient steps per second of every baseline at small CPU-preset sizes, and the speed-up of
stacking agents in one batched network over a Python loop of per-agent networks.

    .venv/bin/python benchmarks/bench_baselines.py [--seconds 2] [--agents 4] [--hidden 64]

Continuous methods run on a synthetic N-agent task (random data, Ant-like sizes: 27-d state,
per-agent 13-d observations, 2-d actions); discrete ones on the Coordination Game.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from momawb.baselines import bc, common, cql, iql, td3bc
from momawb.datasets import Dataset
from momawb.domains import Domain, game
from momawb.generate import game_dataset_config, generate_game
from momawb.nets import mlp


def synthetic(n_agents: int, n: int = 5000, seed: int = 0) -> tuple[Domain, Dataset]:
    rng = np.random.default_rng(seed)
    state_dim, obs_dim, act_dim = 27, 13, 2
    obs_index = np.stack([rng.choice(state_dim, obs_dim, replace=False) for _ in range(n_agents)])
    domain = Domain(name="synthetic", task=f"{n_agents}-agents", n_agents=n_agents, state_dim=state_dim,
                    obs_index=obs_index, act_dim=act_dim, n_actions=None, episode_length=100,
                    reference_returns=(0.0, 1.0))
    s = rng.standard_normal((n, state_dim)).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[99::100] = True
    ds = Dataset(s, rng.uniform(-1, 1, (n, n_agents * act_dim)), rng.standard_normal(n), np.roll(s, -1, 0),
                 np.zeros(n, bool), timeouts)
    return domain, ds


def steps_per_second(algo, sampler, batch_size: int, seconds: float) -> float:
    for _ in range(5):
        algo.update(sampler.sample(batch_size))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        algo.update(sampler.sample(batch_size))
        n += 1
    return n / (time.perf_counter() - t0)


def build(method: str, domain, over: dict):
    if method in ("iql", "maiql"):
        return iql.build_iql(iql.MAIQLConfig(**over), domain, central=method == "iql")
    if method == "ibc":
        return bc.build_bc(bc.BCConfig(**over), domain)
    cfg_cls, cls = {"matd3bc": (td3bc.TD3BCConfig, td3bc.TD3BC), "itd3bc": (td3bc.TD3BCConfig, td3bc.TD3BC),
                    "icql": (cql.CQLConfig, cql.CQL), "iomar": (cql.OMARConfig, cql.OMAR)}[method]
    return td3bc.build_td3(cfg_cls(**{"obs_norm": False, **over}), domain, method == "matd3bc", cls)


def looped_vs_stacked(n_agents: int, hidden: int, batch: int, seconds: float) -> tuple[float, float]:
    """Forward + backward of N per-agent double critics: a Python loop vs one `AgentCritic`."""
    d, a = 13, 2
    stacked = common.AgentCritic(n_agents, d, a, None, 2, (hidden, hidden))
    looped = nn.ModuleList(mlp(d + a, 1, (hidden, hidden)) for _ in range(2 * n_agents))
    x, u = torch.randn(batch, n_agents, d), torch.randn(batch, n_agents, a)

    def run_stacked():
        stacked(x, u).sum().backward()

    def run_looped():
        inp = torch.cat([x, u], -1)
        sum(looped[c * n_agents + i](inp[:, i]).sum() for c in range(2) for i in range(n_agents)).backward()

    out = []
    for fn in (run_stacked, run_looped):
        for _ in range(5):
            fn()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn()
            n += 1
        out.append(n / (time.perf_counter() - t0))
    return out[0], out[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    over = dict(hidden=(args.hidden, args.hidden), batch_size=args.batch)
    gdom, gds = game.make_domain(), generate_game(game_dataset_config("neutral", n_episodes=200))
    cdom, cds = synthetic(args.agents)
    print(f"gradient steps/s, hidden {args.hidden}x2, batch {args.batch}, {args.threads} thread(s)")
    print(f"{'method':10s} {'task':22s} {'no memory':>10s} {'memory':>10s} {'ratio':>7s}")
    for method in ("iql", "maiql", "ibc", "matd3bc", "itd3bc", "icql", "iomar"):
        dom, ds = (gdom, gds) if method in ("iql", "maiql", "ibc") else (cdom, cds)
        rates = []
        for memory in (False, True):
            if method == "iql" and memory:
                rates.append(float("nan"))
                continue
            algo = build(method, dom, {**over, "memory": memory})
            sampler = common.ReplaySampler(ds, dom, torch.device("cpu"), np.random.default_rng(0), memory, 10)
            rates.append(steps_per_second(algo, sampler, args.batch, args.seconds))
        print(f"{method:10s} {dom.name + '/' + dom.task:22s} {rates[0]:10.1f} {rates[1]:10.1f} "
              f"{rates[0] / rates[1]:7.2f}")
    print("\ncritic forward+backward per second, 2 critics x N agents, stacked vs looped")
    for n in (2, 4, 8):
        s, l = looped_vs_stacked(n, args.hidden, args.batch, args.seconds / 2)
        print(f"N={n}: stacked {s:8.1f}/s  looped {l:8.1f}/s  speed-up x{s / l:.2f}")


if __name__ == "__main__":
    main()
