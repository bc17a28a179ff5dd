"""`flat_adam.FlatAdam` against torch's multi-tensor (foreach) Adam, in one run.

1. One optimiser step over the parameter shapes of momawb's networks (the game's, Reacher's
   and Ant's policies and critics, the world model at 4 x 200 and 4 x 1024).
2. One whole update with each optimiser: MOMA-PPO on Reacher at the cpu preset (64-wide
   networks, 40 minibatches; rollouts from a stand-in ensemble, built once), and IQL, MAIQL and
   IBC on the Coordination Game at the ci preset.

The two are timed alternately, ``--repeats`` times each, and the median ratio is printed (this
is a shared VM: single timings move by 20 % or more). Both optimisers give the same parameters
bit for bit (tests/test_precision.py), so only the time differs.
Usage: python benchmarks/bench_adam.py [--repeats 7] [--threads 1]
"""
import argparse
import statistics
import tempfile
import time
from unittest import mock

import numpy as np
import torch

from momawb.flat_adam import FlatAdam


def torch_adam(params, lr, fused=False):
    return torch.optim.Adam(params, lr=lr, foreach=True)


def mlp_shapes(members: int, d_in: int, width: int, depth: int, d_out: int) -> list[tuple]:
    dims = [d_in] + [width] * depth + [d_out]
    return [s for a, b in zip(dims[:-1], dims[1:]) for s in ((members, a, b), (members, 1, b))]


SHAPES = {  # (shapes, steps per timing)
    "game policy+critic, 2 x 32": (mlp_shapes(2, 4, 32, 2, 2) + mlp_shapes(2, 6, 32, 2, 1), 2000),
    "Reacher MOMA-PPO, 2 x 64": (mlp_shapes(2, 10, 64, 2, 4) + mlp_shapes(2, 10, 64, 2, 1), 2000),
    "Reacher critic, 2 x 128": (mlp_shapes(2, 12, 128, 2, 2), 1000),
    "Ant policies+values, 4 x 256": (mlp_shapes(4, 27, 256, 2, 4) + mlp_shapes(4, 27, 256, 2, 1), 300),
    "world model 7 x 4 x 200": (mlp_shapes(7, 35, 200, 4, 56), 100),
    "world model 7 x 4 x 1024": (mlp_shapes(7, 35, 1024, 4, 56), 5),
}


def timed(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def ratio(make_a, make_b, n: int, repeats: int) -> tuple[float, float, float]:
    """Median seconds of a and b (alternating) and the median of the per-pair ratios a / b."""
    a, b = make_a(), make_b()
    a(), b()                                                   # warm up (allocations, first steps)
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(timed(a, n))
        tb.append(timed(b, n))
    return statistics.median(ta), statistics.median(tb), statistics.median(x / y for x, y in zip(ta, tb))


def step_fn(cls, shapes):
    def make():
        torch.manual_seed(0)
        params = [torch.randn(s, requires_grad=True) for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p)
        opt = cls(params, lr=1e-3)
        return opt.step
    return make


def moma_ppo_update(adam_factory):
    """One MOMA-PPO update (Reacher cpu preset networks) on fixed rollouts."""
    from momawb import moma_ppo
    from momawb.domains import make
    from momawb.model_env import StepOut
    from momawb.nets import StackedMLP

    def make_update():
        torch.manual_seed(0)
        dom = make("reacher", observation="fo")
        S, N, A, E = dom.state_dim, dom.n_agents, dom.act_dim, 5
        net = StackedMLP(E, S + N * A, S + 1, (200,) * 4)

        class StandIn:   # a fixed random ensemble: rollouts are built once, only the update is timed
            @torch.no_grad()
            def step(self, states, actions, generator=None):
                x = torch.cat([states, actions.flatten(-2)], -1)
                y = net(x.expand(E, *x.shape))
                pick = torch.randint(E, (len(states),))
                nxt = (states + 0.01 * y[..., :-1])[pick, torch.arange(len(states))]
                return StepOut(nxt, y[..., -1].mean(0), torch.ones(len(states), dtype=torch.bool), y[..., -1].var(0),
                               0.01 * y.std(0).norm(dim=-1), torch.zeros(len(states)))

        cfg = moma_ppo.MomaPPOConfig(hidden=(64, 64), lr=3e-4, obs_norm=True, value_norm=True, clip_per_group=True,
                                     init_log_std=-1.0, device="cpu")
        with mock.patch.object(moma_ppo, "adam", adam_factory):
            algo = moma_ppo.MomaPPO(dom, cfg, torch.device("cpu"))
        start = {"states": torch.randn(cfg.n_rollouts, S), "hist": None, "qpos": None, "qvel": None}
        ro = moma_ppo.model_rollouts(algo.agents, StandIn(), dom, start, cfg)
        rng = np.random.default_rng(0)
        return lambda: algo.update(ro, rng)
    return make_update


def baseline_update(method: str, adam_factory, domain, dataset):
    from momawb.baselines import common
    from momawb.baselines.bc import build_bc
    from momawb.baselines.iql import build_iql
    from momawb.train import method_config
    build = {"iql": lambda c, d: build_iql(c, d, central=True), "maiql": lambda c, d: build_iql(c, d, central=False),
             "ibc": build_bc}[method]

    def make_update():
        torch.manual_seed(0)
        config = method_config(method, "coordination_game", "ci")
        with mock.patch.object(common.precision, "adam", adam_factory):
            algo = build(config, domain)
        sampler = common.ReplaySampler(dataset, domain, torch.device("cpu"), np.random.default_rng(0))
        batches = [sampler.sample(config.batch_size) for _ in range(20)]
        it = iter(range(10**9))
        return lambda: algo.update(batches[next(it) % 20])
    return make_update


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a sweep worker on 2 cores: 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} alternating timings")
    print(f"{'one optimiser step':34s} {'elements':>10s} {'torch foreach':>14s} {'FlatAdam':>10s} {'ratio':>7s}")
    for name, (shapes, n) in SHAPES.items():
        elements = sum(int(np.prod(s)) for s in shapes)
        ta, tb, r = ratio(step_fn(lambda ps, lr: torch.optim.Adam(ps, lr=lr, foreach=True), shapes),
                          step_fn(FlatAdam, shapes), n, args.repeats)
        print(f"{name:34s} {elements:>10,d} {1e3 * ta:>11.3f} ms {1e3 * tb:>7.3f} ms {r:>6.2f}x")

    from momawb import precision
    from momawb.domains import game
    from momawb.generate import game_dataset
    with tempfile.TemporaryDirectory() as root:
        dataset = game_dataset("neutral", root=root)
    domain = game.make_domain()
    print(f"{'one whole update':34s} {'':>10s} {'torch foreach':>14s} {'FlatAdam':>10s} {'ratio':>7s}")
    rows = [("MOMA-PPO, Reacher cpu preset", moma_ppo_update, 1)]
    rows += [(f"{m.upper()}, game ci preset", lambda f, m=m: baseline_update(m, f, domain, dataset), 50)
             for m in ("iql", "maiql", "ibc")]
    for name, make, n in rows:
        ta, tb, r = ratio(make(torch_adam), make(precision.adam), n, args.repeats)
        print(f"{name:34s} {'':>10s} {1e3 * ta:>11.3f} ms {1e3 * tb:>7.3f} ms {r:>6.2f}x")


if __name__ == "__main__":
    main()
