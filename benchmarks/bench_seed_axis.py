"""What a seed axis would buy Table 3: one update of each model-free method at its ci batch
size B against one update on 10 B rows through the same networks, in one run.

Table 3 trains 10 seeds per cell as 10 separate runs of small (32-wide) networks, so an update
costs per-operation overhead, not arithmetic (README, Speed). Stacking the 10 seeds' weights
along a new axis, the way the world model stacks its members, would run the 10 updates as one
with the same operations on 10x the rows. 10 B rows through one set of networks has that same
operation count and arithmetic, so ``10 t(B) / t(10 B)`` estimates the speed-up on the update
part of a job; it is an estimate (the stacked layout is not built), printed as such. The
script then times whole Table 3 jobs of each method (dataset, world model for MOMA-PPO,
training, evaluation, files) to say what share of Table 3 the updates are, and so what the seed
axis would save of it.

Usage: python benchmarks/bench_seed_axis.py [--seeds 10] [--repeats 5]
"""
import argparse
import tempfile
import time

import numpy as np
import torch

from momawb import sweep
from momawb.jobs import prepare_dataset_job
from momawb.baselines.bc import build_bc
from momawb.baselines.common import ReplaySampler
from momawb.baselines.iql import build_iql
from momawb.domains import game
from momawb.generate import game_dataset
from momawb.train import method_config

BUILD = {"iql": lambda c, d: build_iql(c, d, central=True), "maiql": lambda c, d: build_iql(c, d, central=False),
         "ibc": build_bc}


def per_update(method: str, domain, dataset, batch_size: int, repeats: int, n: int = 20) -> float:
    """Seconds per ``algo.update`` (the minimum over ``repeats`` passes of ``n`` updates)."""
    algo = BUILD[method](method_config(method, "coordination_game", "ci"), domain)
    sampler = ReplaySampler(dataset, domain, torch.device("cpu"), np.random.default_rng(0))
    batches = [sampler.sample(batch_size) for _ in range(n)]
    for b in batches[:5]:
        algo.update(b)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for b in batches:
            algo.update(b)
        times.append((time.perf_counter() - t0) / n)
    return min(times)


def job_seconds(method: str, root: str, seeds: range) -> float:
    """Mean wall seconds of one whole Table 3 job (neutral, ci preset, fresh data per seed)."""
    total = 0.0
    for job in sweep.grid([method], ["neutral"], seeds, domain="game", notebook="coordination_game", preset="ci",
                          root=root, resample_data=True):
        t0 = time.perf_counter()
        prepare_dataset_job(job)
        if method == "moma_ppo":
            sweep.fit_world_model_job(job)
        sweep.run_job(job, threads=1)
        total += time.perf_counter() - t0
    return total / len(seeds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)                   # as in a Table 3 pool worker on 2 cores
    domain = game.make_domain()
    with tempfile.TemporaryDirectory() as root:
        dataset = game_dataset("neutral", root=root)
    print(f"one update, 1 torch thread; {args.seeds} seeds as {args.seeds} updates vs one on {args.seeds}x the rows")
    saved = 0.0
    for method in BUILD:
        config = method_config(method, "coordination_game", "ci")
        b = config.batch_size
        one = per_update(method, domain, dataset, b, args.repeats)
        stacked = per_update(method, domain, dataset, args.seeds * b, args.repeats)
        saved += config.steps * (one - stacked / args.seeds)
        print(f"  {method:6s} batch {b}: {1e3 * one:6.2f} ms   batch {args.seeds * b}: {1e3 * stacked:6.2f} ms   "
              f"{args.seeds} x {1e3 * one:.2f} / {1e3 * stacked:.2f} = {args.seeds * one / stacked:.2f}x (estimate)")
    with tempfile.TemporaryDirectory() as root:
        jobs = {m: job_seconds(m, root, range(3, 6)) for m in ["iql", "maiql", "ibc", "moma_ppo"]}
    total = sum(jobs.values())
    print("one whole Table 3 job, mean of 3 seeds: " + ", ".join(f"{m} {t:.2f} s" for m, t in jobs.items()))
    print(f"the model-free updates stacked over seeds would save {saved:.2f} s of every {total:.2f} s "
          f"({100 * saved / total:.0f} %): Table 3 x {total / (total - saved):.2f} faster (estimate; MOMA-PPO, "
          "evaluation and files unchanged)")


if __name__ == "__main__":
    main()
