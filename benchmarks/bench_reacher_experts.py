"""Reacher expert teams and the expert-mix dataset (issue 8): wall times, returns, conventions.

Trains (or reloads from ``outputs/runs/reacher-expert/``) the expert teams of the named
"expert-mix" config (``momawb.generate.reacher.reacher_dataset_config``) seed by seed until a CCW and a CW expert exist, prints
each seed's training wall time, greedy return, normalised score and convention fractions,
measures a *mixed* team (the CCW team's shoulder with the CW team's elbow) to show the
mis-coordination measure on a real case, then builds (or loads) the expert-mix dataset and
prints its normalised score statistics beside PAPER.md Table 2. Asserts nothing.

    python benchmarks/bench_reacher_experts.py                      # the default preset
    python benchmarks/bench_reacher_experts.py --steps 100 --episodes 200   # a quick look

Wall times are those of the first training of each run (stored in its ``expert.json``); the
machine is shared, so they vary with its load.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from momawb import conventions
from momawb.domains import make
from momawb.generate.reacher import reacher_dataset, reacher_dataset_config, reacher_experts

TABLE2 = {"score_min": 0.388, "score_mean": 1.0, "score_median": 0.989, "score_max": 1.523}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="expert_steps (default: the config's)")
    p.add_argument("--episodes", type=int, default=None, help="episodes_per_team (default: the config's)")
    p.add_argument("--max-seeds", type=int, default=None)
    p.add_argument("--shaping", type=float, default=None)
    p.add_argument("--root", default=None, help="outputs folder (default outputs/)")
    a = p.parse_args()
    torch.set_num_threads(1)
    kw = {k: v for k, v in (("expert_steps", a.steps), ("episodes_per_team", a.episodes),
                            ("max_seeds", a.max_seeds), ("shaping", a.shaping)) if v is not None}
    cfg = reacher_dataset_config("expert-mix", **kw)
    print("config:", json.dumps(cfg.to_dict()))
    best, infos = reacher_experts(cfg, a.root, log=None)
    print(f"\n{'seed':>4} {'wall s':>7} {'s/iter':>6} {'return':>7} {'score':>6} {'conv':>6} "
          f"{'ccw':>5} {'cw':>5} {'mis':>5} {'reach':>5} {'fight':>5}")
    for i in infos:
        if i.get("diverged"):
            print(f"{i['seed']:>4} {i['train_wall_s']:7.0f}  diverged: {i['error'][:70]}")
            continue
        print(f"{i['seed']:>4} {i['train_wall_s']:7.0f} {i['train_wall_s'] / i['steps']:6.2f} {i['return']:7.2f} "
              f"{i['score']:6.2f} {i['convention']:>6} {i['ccw']:5.2f} {i['cw']:5.2f} {i['miscoordinated']:5.2f} "
              f"{i['reached']:5.2f} {i['fight_fraction']:5.2f}")
    domain = make("reacher")
    mixed = conventions.MixedTeam(best["ccw"][0], best["cw"][0])
    m = conventions.measure_conventions(mixed, domain, episodes=cfg.convention_episodes)
    print(f"\nmixed team (ccw shoulder + cw elbow): return {m['return']:.2f} score {m['score']:.2f} "
          f"ccw {m['ccw']:.2f} cw {m['cw']:.2f} mis {m['miscoordinated']:.2f} reach {m['reached']:.2f} "
          f"fight {m['fight_fraction']:.2f}")
    t0 = time.perf_counter()
    ds = reacher_dataset(cfg, a.root, log=None)
    print(f"\ndataset {ds.source} ({time.perf_counter() - t0:.0f} s to build or load)")
    d = ds.describe(domain)
    print(f"{'':>14} {'ours':>8} {'Table 2':>8}")
    for k, ref in TABLE2.items():
        print(f"{k:>14} {100 * d[k]:7.1f}% {100 * ref:7.1f}%")
    meas = ds.meta["measured_reference_returns"]
    print(f"transitions {d['transitions']}, episodes {d['episodes']}, mean return {d['return_mean']:.3f}")
    print(f"paper references: random -11.145, expert -4.237; measured: uniform random {meas['random']:.3f}, "
          f"zero torque {meas['zero_torque']:.3f}, expert teams {meas['expert']:.3f} {meas['expert_per_team']}")
    lab = conventions._summary(conventions.dataset_labels(ds))
    print(f"dataset episode labels: ccw {lab['ccw']:.3f} cw {lab['cw']:.3f} mis {lab['miscoordinated']:.3f} "
          f"straight {lab['straight']:.3f}")


if __name__ == "__main__":
    main()
