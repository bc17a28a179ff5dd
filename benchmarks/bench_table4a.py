"""Table 4a (two-agent Reacher) at a preset, as `notebooks/reacher.ipynb` runs it: wall time of
the whole grid with the local process pool, split by method (training wall time summed over
settings and seeds), and the table beside the paper's. Runs land in outputs/ (the notebook
then finds them finished); ``--fresh`` uses a temporary folder instead.
Usage: python benchmarks/bench_table4a.py [--preset cpu] [--seeds N] [--workers 2] [--fresh]
       [--methods matd3bc itd3bc] [--observations fo leader] [--po-memory on|off]
       [--set moma_ppo.steps=1000 ...]   (SECTION.KEY=VALUE: a config override, YAML value; such
                                         runs are other runs than the notebook's)"""
import argparse
import os
import tempfile
import time
from collections import defaultdict

import yaml

from momawb import config as cfg
from momawb import sweep, tables
from momawb.train import DISPLAY

METHODS = ["iql", "maiql", "matd3bc", "ibc", "itd3bc", "icql", "iomar", "moma_ppo"]
OBSERVATIONS = ["fo", "independent", "leader"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--observations", nargs="+", default=OBSERVATIONS, choices=OBSERVATIONS)
    ap.add_argument("--po-memory", choices=["on", "off"], default=None, help="default: the preset's")
    ap.add_argument("--set", nargs="+", default=[], metavar="SECTION.KEY=VALUE")
    args = ap.parse_args()
    overrides: dict = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        section, dot, field = key.partition(".")
        if not (sep and dot):
            ap.error(f"--set takes SECTION.KEY=VALUE (e.g. moma_ppo.steps=1000), got {item!r}")
        overrides.setdefault(section, {})[field] = yaml.safe_load(value)
    params, _ = cfg.read_preset("reacher", args.preset)
    seeds = args.seeds or params.get("seeds", 3)
    with tempfile.TemporaryDirectory() as tmp:
        po_memory = params.get("po_memory", False) if args.po_memory is None else args.po_memory == "on"
        jobs = sweep.observation_grid(args.methods, "expert-mix", range(seeds), "reacher", args.observations,
                                      po_memory=po_memory, notebook="reacher",
                                      preset=args.preset, root=tmp if args.fresh else None, overrides=overrides)
        t0 = time.perf_counter()
        rows = sweep.sweep(jobs, backend="local", workers=args.workers)
        wall = time.perf_counter() - t0
    split = defaultdict(float)
    for r in rows:
        split[r["method"]] += r["wall_time"]
    total = sum(split.values())
    print(f"Table 4a, preset {args.preset}: {len(rows)} trainings, {seeds} seeds, {os.cpu_count()} cores; "
          f"wall time {wall / 60:.1f} min (runs already finished are not retrained)")
    for m, t in sorted(split.items(), key=lambda kv: -kv[1]):
        print(f"  {DISPLAY[m]:9s} {t / 60:6.1f} min of training ({t / total:5.1%})")
    measured = tables.aggregate(rows)
    print(tables.to_markdown(tables.side_by_side(measured, tables.TABLE4A, DISPLAY)))
    conv = defaultdict(list)
    for r in rows:
        conv[(r["task"], r["method"])].append(r["conventions"]["miscoordinated"])
    print("mis-coordinated episodes (mean over seeds):")
    for (task, m), v in sorted(conv.items()):
        print(f"  {task:12s} {DISPLAY[m]:9s} {sum(v) / len(v):.2f}")


if __name__ == "__main__":
    main()
