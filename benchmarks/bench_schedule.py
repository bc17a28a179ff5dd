"""The sweep's schedule on the Reacher cpu grid (66 trainings), in one invocation: the old phases
(world model first, then the jobs in grid order) against the overlapped schedule (world model
beside the model-free jobs, each MOMA-PPO job as soon as it can, before waiting model-free jobs;
`momawb.workers.run_tasks`). Steps are cut to ``--scale`` of the preset's (one evaluation per
run) so both fit in about 15 minutes each on 2 cores; the dataset is the preset's expert-mix,
generated first when it is not cached (about 12 min). Prints both wall times, their ratio, the
packing of the measured job times scaled back to the full grid (`workers.makespan`), and
whether all scores are identical.

Measured 2026-12-03 as the commit before this schedule against this one (scale 0.1, 2 cores, README "Speed"):
phases 897 s, overlapped 876 s, all 66 scores identical.
Usage: python benchmarks/bench_schedule.py [--scale 0.1] [--workers 2] [--seeds 3]"""
import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from momawb import generate, sweep
from momawb.jobs import generator_overrides
from momawb.runs import outputs_root
from momawb.workers import Task, makespan

METHODS = ["iql", "maiql", "matd3bc", "ibc", "itd3bc", "icql", "iomar", "moma_ppo"]


def scaled_overrides(scale: float) -> dict:
    from momawb.train import method_config
    from momawb import config as cfg
    over = {}
    for m in METHODS:
        steps = max(1, round(method_config(m, "reacher", "cpu").steps * scale))
        over[m] = {"steps": steps, "eval_every": steps, "checkpoint_every": max(1, steps // 2)}
    wm = cfg.load(cfg.section_class("world_model"), "reacher", "cpu", section="world_model")
    steps = max(1, round(wm.steps * scale))
    over["world_model"] = {"steps": steps, "eval_every": max(1, steps // 5), "checkpoint_every": max(1, steps // 5)}
    return over


def grid(seeds: int, **kw) -> list:
    return sweep.observation_grid(METHODS, "expert-mix", range(seeds), "reacher", ["fo", "independent", "leader"],
                                  notebook="reacher", preset="cpu", **kw)


def run(schedule: str, root: Path, over: dict, workers: int, seeds: int) -> tuple[float, list[dict]]:
    jobs = grid(seeds, root=str(root), overrides=over)
    keep = sweep.overlapped
    if schedule == "phases":
        sweep.overlapped = lambda *a: False      # the schedule before: world models, then jobs in order
    try:
        t0 = time.perf_counter()
        rows = sweep.sweep(jobs, backend="local", workers=workers, progress=False)
        return time.perf_counter() - t0, rows
    finally:
        sweep.overlapped = keep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3, help="the preset's 3; fewer for a quick look")
    args = ap.parse_args()
    t0 = time.perf_counter()
    job = sweep.observation_grid(["ibc"], "expert-mix", [0], "reacher", ["fo"], notebook="reacher", preset="cpu")[0]
    generate.named_dataset("reacher", "expert-mix", workers=args.workers, **generator_overrides(job))
    print(f"dataset ready in {time.perf_counter() - t0:.0f} s (0 when cached)")
    over = scaled_overrides(args.scale)
    walls, rows = {}, {}
    for schedule in ("phases", "overlapped"):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "datasets").symlink_to(outputs_root() / "datasets")   # the cached dataset, read only
            walls[schedule], rows[schedule] = run(schedule, Path(tmp), over, args.workers, args.seeds)
        busy = sum(r["wall_time"] for r in rows[schedule])
        print(f"{schedule:10s} {walls[schedule]:7.1f} s   ({len(rows[schedule])} trainings, "
              f"{busy:.0f} s of training summed)")
    print(f"phases / overlapped = {walls['phases'] / walls['overlapped']:.3f}x")
    key = lambda r: (r["method"], r["task"], r["seed"])  # noqa: E731
    same = {key(r): r["score"] for r in rows["phases"]} == {key(r): r["score"] for r in rows["overlapped"]}
    print(f"scores identical: {same}")
    jobs = grid(args.seeds)
    t = {key(r): r.get("job_wall_time", r["wall_time"]) / args.scale for r in rows["overlapped"]}
    d = [t[(j.method, j.task, j.seed)] for j in jobs]
    share, total = defaultdict(float), sum(d)
    for j, x in zip(jobs, d):
        share[j.method] += x / total
    by_share = sorted(share.items(), key=lambda kv: -kv[1])
    print("training time per method: " + ", ".join(f"{m} {s:.0%}" for m, s in by_share))
    moma_first = makespan([Task(None, j, priority=j.method != "moma_ppo") for j in jobs], d, args.workers)
    print(f"the job times / {args.scale} packed on {args.workers} workers (world model not included): "
          f"grid order {makespan([Task(None, j) for j in jobs], d, args.workers) / 60:.0f} min, "
          f"MOMA-PPO first {moma_first / 60:.0f} min, "
          f"ideal {sum(d) / args.workers / 60:.0f} min")


if __name__ == "__main__":
    main()
