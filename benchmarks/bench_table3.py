"""Wall time of the full Table 3 at the ci preset (4 methods x 3 datasets x 10 seeds = 120
trainings), serial vs the local process pool. Fresh output folders each time, so nothing is
skipped. Usage: python benchmarks/bench_table3.py [--preset ci] [--seeds 10]"""
import argparse
import os
import tempfile
import time

from momawb import sweep, tables
from momawb.train import DISPLAY


def run(backend: str, preset: str, seeds: int) -> tuple[float, list]:
    with tempfile.TemporaryDirectory() as root:
        jobs = sweep.grid(["iql", "maiql", "ibc", "moma_ppo"], ["favorable", "neutral", "unfavorable"],
                          range(seeds), domain="game", notebook="coordination_game", preset=preset, root=root,
                          resample_data=True)
        t0 = time.perf_counter()
        rows = sweep.sweep(jobs, backend=backend, progress=False)
        return time.perf_counter() - t0, rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="ci")
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args()
    import torch
    t_pool, rows = run("local", args.preset, args.seeds)   # workers use cores / workers threads each
    torch.set_num_threads(1)                               # the same per-process threads for serial
    t_serial, rows_s = run("serial", args.preset, args.seeds)
    print(f"Table 3, preset {args.preset}: {len(rows)} trainings on {os.cpu_count()} cores")
    print(f"  serial      {t_serial:7.1f} s   (1 torch thread)")
    print(f"  local pool  {t_pool:7.1f} s   (serial / pool = {t_serial / t_pool:.2f}x; goal < 60 s)")
    same = sorted((r['method'], r['dataset'], r['seed'], r['score']) for r in rows) == \
        sorted((r['method'], r['dataset'], r['seed'], r['score']) for r in rows_s)
    print(f"  pool and serial scores identical: {same}")
    measured = tables.aggregate([{**r, "task": r["dataset"]} for r in rows])
    print(tables.to_markdown(tables.side_by_side(measured, tables.TABLE3, DISPLAY)))


if __name__ == "__main__":
    main()
