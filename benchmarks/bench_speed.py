"""Speed against the anchors (issue 19): the world-model update and one MOMA-PPO iteration, in
fp32 and the opt-in precisions, beside OfflineRL-Kit's trainer and the released MOMA-PPO code
timed in the same run by their anchor scripts (``../shared/anchors/``, their code unmodified).

1. World-model update, 7 members x 4 x {200, 1024}, batch 256, Ant sizes (35 inputs, 28 targets):
   ms/step of `EnsembleTrainer.update` for fp32, fp32 + fused Adam, bf16 autocast, bf16 + fused
   Adam; and the validation NLL each reaches on the same learnable synthetic data after the same
   steps (at width 200), so a faster setting is shown to learn as well.
   Anchor: ``offlinerlkit_ensemble_bench.py`` (``EnsembleDynamics.learn``, same sizes).
2. One MOMA-PPO iteration at PO Ant sizes (4 agents, memory on, 2,000 transitions, k = 10 with
   no early cut, a 4 x 1024 world model with random weights, 100k-transition synthetic dataset):
   rollouts + GAE + the MAPPO update, per precision. Anchor: ``official_moma_ppo_bench.py``
   (``generate_transition_batches`` + ``get_gae`` + ``MAPPO.update_from_batch``, PO, WM 1024).
3. Several runs at once (``--parts 3``, for ``sweep(..., workers_per_gpu=K)``): K processes each
   running part 2's iteration (fp32, and on CUDA the tf32 graph setting), warmed up, then all
   from one common start for ``--duration`` s, for K in ``--concurrent`` (default 1,2,4): the
   median iteration of each and the iterations per second of all K against one run alone. On
   CUDA the lone run is also profiled: the GPU's busy time per iteration bounds what processes
   that take turns on the GPU can add.

    python benchmarks/bench_speed.py --okit-src DIR --moma-src DIR [--anchors ../shared/anchors] [--quick] [--rounds 3]
    python benchmarks/bench_speed.py --device cuda --parts 1,2,3      # issue 19's GPU rows, one script

``--device cuda`` times on the GPU (a CUDA synchronisation closes every timed interval) with the
CUDA settings: fp32, tf32, bf16, tf32 + fused Adam, and each step replayed as a CUDA graph
(``cuda_graph: true``, `momawb.cuda_graphs`, with fused Adam) in fp32, tf32 and bf16; for the
world model also ``sampling: device`` (minibatches drawn on the GPU, no host read per step) in
fp32 and tf32 + fused Adam, and with every graph setting (the graphs need it). Part 3 times fp32
and, on CUDA, the tf32 graph setting. The anchors are CPU code and
run only with the default ``--device cpu``.

momawb's side keeps freed memory as its trainers do (`momawb.allocator`, fewer page faults); the
anchors run as released, or with the same glibc setting under ``--anchors-keep-memory``.

``--okit-src`` / ``--moma-src``: extracted source trees as the anchors' headers say (e.g.
``git --git-dir=<mirror> archive HEAD | tar -x -C DIR``); without them only momawb is timed.
Run it on an otherwise idle machine; the ratios are what to read. ``--rounds R`` alternates the
anchor and momawb R times and ends with the median of the per-round ratios: on a shared host,
whose speed drifts between minutes, that is the figure to quote.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from momawb.allocator import GLIBC_ENV, keep_freed_memory
from momawb.datasets import Dataset
from momawb.domains import make
from momawb.moma_ppo import MomaPPO, MomaPPOConfig
from momawb.rollouts import model_rollouts, sample_starts
from momawb.runs import Run
from momawb.model_trainer import EnsembleTrainer
from momawb.world_model import GaussianEnsemble, WorldModel, WorldModelConfig

S, A = 27, 8
SETTINGS = {"fp32": {}, "fp32 + fused Adam": {"fused_adam": True}, "bf16": {"precision": "bf16"},
            "bf16 + fused Adam": {"precision": "bf16", "fused_adam": True}}
GRAPH = "tf32 + fused Adam + CUDA graph"            # part 3's graph setting
WORKER_SETUP_S = 600                                # part 3: how long a worker may take to warm up
_EAGER = {"fp32": {}, "tf32": {"precision": "tf32"}, "bf16": {"precision": "bf16"},
          "tf32 + fused Adam": {"precision": "tf32", "fused_adam": True}}
_GRAPHED = {"fp32": {}, "tf32": {"precision": "tf32"}, "bf16": {"precision": "bf16"}}   # + fused Adam + graph
_DEVICE = {"sampling": "device"}
CUDA_SETTINGS = {**_EAGER, **{f"{p} + fused Adam + CUDA graph": {**kw, "fused_adam": True, "cuda_graph": True}
                              for p, kw in _GRAPHED.items()}}
CUDA_WM_SETTINGS = {**_EAGER, "fp32 + device sampling": _DEVICE,
                    "tf32 + fused Adam + device sampling": {"precision": "tf32", "fused_adam": True, **_DEVICE},
                    **{f"{p} + fused Adam + device sampling + CUDA graph":
                       {**kw, "fused_adam": True, **_DEVICE, "cuda_graph": True} for p, kw in _GRAPHED.items()}}


def settings(device: torch.device, world_model: bool) -> dict[str, dict]:
    """The config overrides timed on ``device`` (the world model has one more on CUDA)."""
    if device.type != "cuda":
        return SETTINGS
    return CUDA_WM_SETTINGS if world_model else CUDA_SETTINGS


def synthetic(n: int = 100_000, seed: int = 0) -> Dataset:
    """Ant-shaped transitions with a learnable map: s' = s + 0.1 tanh(W [s, a]) + noise, r = u.s."""
    g = np.random.default_rng(seed)
    s, a = g.normal(size=(n, S)).astype(np.float32), g.uniform(-1, 1, (n, A)).astype(np.float32)
    w, u = g.normal(size=(S + A, S)) / np.sqrt(S + A), g.normal(size=S) / np.sqrt(S)
    nxt = s + 0.1 * np.tanh(np.c_[s, a] @ w) + 0.01 * g.normal(size=(n, S))
    timeouts = np.zeros(n, bool)
    timeouts[999::1000] = True
    return Dataset(s, a, s @ u, nxt.astype(np.float32), np.zeros(n, bool), timeouts)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn, reps: int, warmup: int = 1, device: torch.device = torch.device("cpu")) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t)
    return float(np.median(out))


def world_model_update(data, dom, hidden, reps, steps_per_rep, root, device) -> dict[str, float]:
    out = {}
    for name, kw in settings(device, True).items():
        cfg = WorldModelConfig(hidden=hidden, **kw)
        tr = EnsembleTrainer(data, dom, cfg, Run(f"bench-{name}", cfg, root=root), device)
        out[name] = 1e3 * median_time(lambda: [tr.update(i) for i in range(steps_per_rep)], reps,
                                      device=device) / steps_per_rep
    return out


def validation_nll(data, dom, steps: int, root, device) -> dict[str, float]:
    out = {}
    for name, kw in settings(device, True).items():
        cfg = WorldModelConfig(hidden=(200,) * 4, lr=1e-3, **kw)
        torch.manual_seed(0)
        tr = EnsembleTrainer(data, dom, cfg, Run(f"nll-{name}", cfg, root=root), device)
        for i in range(steps):
            tr.update(i)
        out[name] = float(tr.validation()["nll"].mean())
    return out


def random_world_model(dom, hidden, precision: str = "fp32", device: torch.device = torch.device("cpu")) -> WorldModel:
    cfg = WorldModelConfig(hidden=hidden, precision=precision)
    ens = GaussianEnsemble(7, S + A, S, hidden, "relu", cfg.min_logvar, cfg.max_logvar)
    with torch.no_grad():   # random weights would vote "terminal" half the time: make terminals rare, as in
        ens.net.layers[-1].bias[:, :, -1] = -6.0    # the anchor (--mask-bias 6), so every rollout runs k steps
    stats = {"in_mean": torch.zeros(S + A), "in_std": torch.ones(S + A), "out_mean": torch.zeros(S + 1),
             "out_std": torch.full((S + 1,), 0.1), "state_lo": torch.full((S,), -10.0),
             "state_hi": torch.full((S,), 10.0), "reward_lo": torch.tensor(-10.0), "reward_hi": torch.tensor(10.0)}
    return WorldModel(dom, cfg, ens, stats, [0, 1, 2, 3, 4], [0.0] * 7, device)


def iteration_fn(data, kw: dict, device: torch.device):
    """Part 2's iteration (rollouts + GAE + MAPPO update) with config overrides ``kw``: the
    callable, and the lists it appends each call's rollout and update seconds and transitions to."""
    dom = make("ant", observation="po").for_dataset(data)
    data.agent_views(dom, 10)                      # built once, as a run does before its first iteration
    cfg = MomaPPOConfig(memory=True, l_eps=float("inf"), **kw)
    wm = random_world_model(dom, (1024,) * 4, kw.get("precision", "fp32"), device)
    torch.manual_seed(0)
    algo, rng = MomaPPO(dom, cfg, device), np.random.default_rng(0)
    times = {"rollouts": [], "update": [], "transitions": []}

    def iteration():
        t0 = time.perf_counter()
        start = sample_starts(data, dom, cfg.n_rollouts, rng, device, cfg.memory_length)
        ro = model_rollouts(algo.agents, wm, dom, start, cfg)
        sync(device)
        t1 = time.perf_counter()
        algo.update(ro, rng)
        sync(device)
        times["rollouts"].append(t1 - t0)
        times["transitions"].append(int(ro.alive.sum()))
        times["update"].append(time.perf_counter() - t1)
    return iteration, times


def moma_ppo_iteration(data, reps, device: torch.device = torch.device("cpu"),
                       only: tuple[str, ...] | None = None) -> dict[str, dict[str, float]]:
    out = {}
    for name, kw in settings(device, False).items():
        if only is not None and name not in only:
            continue
        iteration, times = iteration_fn(data, kw, device)
        total = median_time(iteration, reps, device=device)
        out[name] = {"iteration": total, "rollouts": float(np.median(times["rollouts"][1:])),
                     "update": float(np.median(times["update"][1:])),
                     "transitions": int(np.median(times["transitions"]))}
    return out


def gpu_kernel_time(fn, n: int, device: torch.device) -> dict[str, float]:
    """Per call of ``fn`` (n calls under torch's profiler): the seconds in which the GPU ran a kernel
    or copy (the union of their intervals), how many it ran, and the profiled wall seconds. The
    busy share bounds what several processes can add on one GPU that takes turns between them."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    sync(device)
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        sync(device)
    wall = time.perf_counter() - t
    spans = sorted((e.time_range.start, e.time_range.end) for e in prof.events() if e.device_type == DeviceType.CUDA)
    busy, end = 0.0, -np.inf
    for a, b in spans:                             # union of intervals, microseconds
        busy += max(0.0, b - max(a, end))
        end = max(end, b)
    return {"kernel_s": busy / n / 1e6, "kernels": len(spans) / n, "profiled_wall_s": wall / n}


def worker(args, device: torch.device) -> None:
    """One run of part 3: warm up (graphs captured), optionally profile, say ready, wait for the
    common start, then iterate for ``--duration`` seconds; prints its count and times as JSON."""
    iteration, _ = iteration_fn(synthetic(), settings(device, False)[args.worker_setting], device)
    for _ in range(3):
        iteration()
    sync(device)
    out = gpu_kernel_time(iteration, 5, device) if args.profile and device.type == "cuda" else {}
    barrier = Path(args.barrier)
    (barrier / f"ready-{os.getpid()}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.005)
    start = float((barrier / "go").read_text())
    while time.time() < start:
        time.sleep(0.001)
    each = []
    while time.time() < start + args.duration:
        t = time.perf_counter()
        iteration()
        sync(device)
        each.append(time.perf_counter() - t)
    print(json.dumps({"iterations": len(each), "seconds": time.time() - start, "median": float(np.median(each)),
                      **out}))


def anchor(script: Path, src: str | None, args: list[str], keep_memory: bool = False) -> dict | None:
    """The anchor script's JSON; ``keep_memory``: its process keeps freed memory as momawb's do."""
    if not src or not script.exists():
        return None
    env = {**os.environ, **(GLIBC_ENV if keep_memory else {})}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.json"
        subprocess.run([sys.executable, str(script), src, *args, "--json", str(path)], check=True,
                       stdout=subprocess.DEVNULL, env=env)
        return json.loads(path.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--anchors", default=str(Path(__file__).resolve().parents[2] / "shared" / "anchors"))
    ap.add_argument("--okit-src", default=None, help="extracted OfflineRL-Kit tree")
    ap.add_argument("--moma-src", default=None, help="extracted moma-ppo tree")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--nll-steps", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=1, help="parts 1 and 2: alternate the anchor and momawb this many "
                    "times and print the median of the per-round ratios (this shared host's speed drifts by tens "
                    "of per cent between minutes)")
    ap.add_argument("--parts", default="1,2", help="which parts to run: 1 (world model), 2 (MOMA-PPO iteration), "
                    "3 (several MOMA-PPO runs at once)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the anchors run only on cpu)")
    ap.add_argument("--concurrent", default="1,2,4", help="part 3: how many runs at once, a comma-separated list "
                    "(default 1,2,4; include 1 for the throughput ratios)")
    ap.add_argument("--anchors-keep-memory", action="store_true",
                    help="run the anchors with glibc keeping freed memory too, as momawb's trainers do "
                         "(momawb.allocator), to tell that setting's share of the ratios apart")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)   # one run of part 3
    ap.add_argument("--worker-setting", default="fp32", help=argparse.SUPPRESS)
    ap.add_argument("--barrier", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--part3", default="fp32,graph", help="part 3's settings: fp32 (eager) and, on CUDA, graph "
                    "(tf32 + fused Adam + CUDA graph) (default fp32,graph; graph needs --device cuda)")
    ap.add_argument("--duration", type=float, default=20.0, help="part 3: seconds each run iterates from the "
                    "common start (default 20; at least a few iterations: the H200 runs about 10 a second, this "
                    "CPU one in 2-4 s)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    if not set(args.part3.split(",")) <= {"fp32", "graph"}:
        ap.error(f"--part3 takes fp32, graph or fp32,graph, got {args.part3!r}")
    if "3" in args.parts.split(",") and args.part3 == "graph" and not args.device.startswith("cuda"):
        ap.error("--part3 graph replays CUDA graphs: it needs --device cuda")
    if not all(c.strip().isdigit() and int(c) >= 1 for c in args.concurrent.split(",")):
        ap.error(f"--concurrent takes run counts >= 1 separated by commas, got {args.concurrent!r}")
    if not args.duration > 0:
        ap.error(f"--duration must be positive seconds, got {args.duration}")
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        ap.error(f"--device must be cpu, cuda or cuda:<index>, got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available here (torch {torch.__version__}); run without "
                 "--device to time the CPU")
    reps = 2 if args.quick else 5
    kept = keep_freed_memory()         # as every momawb trainer does (loop.train_loop)
    device = torch.device(args.device)
    if args.worker:
        worker(args, device)
        return
    if device.type != "cpu":
        args.okit_src = args.moma_src = None
    anchors = Path(args.anchors)
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}; parts 1-2: medians of {reps} "
          "repetitions; "
          f"momawb keeps freed memory (momawb.allocator): {'yes' if kept else 'no'}; the anchors: "
          f"{'yes' if args.anchors_keep_memory else 'no (as released)'}")
    parts = set(args.parts.split(","))
    ratios: dict[str, list[float]] = {}          # "what, setting" -> the anchor / momawb ratio of each round
    for r in range(args.rounds):
        if args.rounds > 1 and parts & {"1", "2"}:
            print(f"\n=== round {r + 1} of {args.rounds}")
        if "1" in parts:
            with tempfile.TemporaryDirectory() as root:
                part1(args, anchors, reps, root, device, ratios, nll=r == 0)
        if "2" in parts:
            part2(args, anchors, reps, device, ratios)
    if args.rounds > 1 and ratios:
        print(f"\nratios against the anchors over {args.rounds} rounds (each taken within its round): median (min-max)")
        for key, xs in ratios.items():
            print(f"  {key:52s} {np.median(xs):.2f}x ({min(xs):.2f}-{max(xs):.2f}x)")
    if "3" in parts:
        part3(args)


def part1(args, anchors: Path, reps: int, root: str, device: torch.device, ratios: dict, nll: bool = True) -> None:
    """World-model update per precision beside OfflineRL-Kit's (each ratio appended to ``ratios``),
    and, with ``nll``, the validation NLL each reaches."""
    data = synthetic()
    dom = make("ant", observation="fo").for_dataset(data)
    print(f"\n1. world-model update (7 members, batch 256, {device.type}), ms/step")
    okit = anchor(anchors / "offlinerlkit_ensemble_bench.py", args.okit_src,
                  ["--configs", "mopo,paper", "--repeats", str(reps), "--no-full-epoch"], args.anchors_keep_memory)
    okit_ms = {r["config"]: r["step_ms"] for r in (okit or {}).get("rows", [])
               if r.get("impl") == "OfflineRL-Kit EnsembleDynamics.learn"}
    for width, key in ((200, "mopo"), (1024, "paper")):
        steps = 20 if width == 200 or device.type == "cuda" else 3
        ours = world_model_update(data, dom, (width,) * 4, reps, steps, root, device)
        ref = okit_ms.get(key)
        print(f"  4 x {width}" + (f": OfflineRL-Kit EnsembleDynamics.learn {ref:.1f} ms" if ref else ""))
        for name, ms in ours.items():
            vs = f", {ref / ms:.2f}x OfflineRL-Kit" if ref else ""
            if ref:
                ratios.setdefault(f"world model 4 x {width}, {name}", []).append(ref / ms)
            print(f"    momawb {name:36s} {ms:8.2f} ms  ({ours['fp32'] / ms:.2f}x fp32{vs})")
    if not nll:
        return
    nlls = validation_nll(synthetic(20_000, seed=1), dom, args.nll_steps, root, device)
    print(f"  validation NLL after {args.nll_steps} steps (4 x 200, lr 1e-3, same data and seed): "
          + ", ".join(f"{k} {v:.4f}" for k, v in nlls.items()))


def part2(args, anchors: Path, reps: int, device: torch.device, ratios: dict) -> None:
    """One MOMA-PPO iteration per precision beside the released code's (rollouts + GAE + update);
    each ratio appended to ``ratios``."""
    print(f"\n2. one MOMA-PPO iteration, PO Ant, memory on, WM 4 x 1024, 2,000 transitions (k = 10), "
          f"{device.type}, s")
    official = anchor(anchors / "official_moma_ppo_bench.py", args.moma_src, ["--reps", str(reps)],
                      args.anchors_keep_memory)
    ref = None
    if official:
        med = {(it["op"], it.get("obs"), it.get("wm_hidden")): it["time"]["median_s"] for it in official["items"]
               if "time" in it}
        parts = {"rollouts": med.get(("generate_transition_batches", "PO", 1024)),
                 "gae": med.get(("MAPPO.get_gae", "PO", None)) or 0.0,
                 "update": med.get(("MAPPO.update_from_batch", "PO", None))}
        if parts["rollouts"] and parts["update"]:
            ref = sum(parts.values())
            print(f"  released code: {ref:.2f} s (rollouts {parts['rollouts']:.2f}, GAE {parts['gae']:.2f}, "
                  f"update {parts['update']:.2f})")
    ours = moma_ppo_iteration(synthetic(), reps, device)
    for name, t in ours.items():
        vs = f", {ref / t['iteration']:.2f}x the released code" if ref else ""
        if ref:
            ratios.setdefault(f"MOMA-PPO iteration, {name}", []).append(ref / t["iteration"])
        print(f"  momawb {name:18s} {t['iteration']:.3f} s ({t['transitions']} transitions: rollouts "
              f"{t['rollouts']:.3f}, update {t['update']:.3f}; "
              f"{ours['fp32']['iteration'] / t['iteration']:.2f}x fp32{vs})")


def part3(args) -> None:
    """K runs at once, each a process running part 2's iteration (its own threads: cores / K), in
    fp32 and, on CUDA, with the steps replayed as CUDA graphs. Every process warms up first and
    all start together, then iterate for ``--duration`` s: the throughput is the iterations per
    second of all K against one run alone. On CUDA the lone run also reports the GPU's busy share."""
    cores = os.cpu_count() or 1
    chosen = {"fp32": "fp32", "graph": GRAPH}
    for setting in (chosen[c] for c in args.part3.split(",") if c == "fp32" or args.device.startswith("cuda")):
        print(f"\n3. several MOMA-PPO runs at once on one {args.device} (part 2's iteration, {setting}; "
              f"{args.duration:g} s from a common start)")
        one = None
        for k in (int(c) for c in args.concurrent.split(",")):
            with tempfile.TemporaryDirectory() as barrier:
                env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // k))}
                cmd = [sys.executable, __file__, "--worker", "--device", args.device, "--worker-setting", setting,
                       "--barrier", barrier, "--duration", str(args.duration)] + (["--profile"] if k == 1 else [])
                procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True) for _ in range(k)]
                deadline = time.time() + WORKER_SETUP_S
                while len(list(Path(barrier).glob("ready-*"))) < k:
                    if any(p.poll() is not None for p in procs):
                        break                          # a worker died before it was ready: reported below
                    if time.time() > deadline:
                        for p in procs:
                            p.kill()
                        raise RuntimeError(f"part 3: {k} workers were not all ready (warmed up) after "
                                           f"{WORKER_SETUP_S} s; killed them")
                    time.sleep(0.05)
                (Path(barrier) / "go.tmp").write_text(str(time.time() + 0.5))
                (Path(barrier) / "go.tmp").rename(Path(barrier) / "go")
                outs = [p.communicate()[0] for p in procs]
            if any(p.returncode for p in procs):
                raise RuntimeError(f"a part-3 worker failed (exit codes {[p.returncode for p in procs]})")
            runs = [json.loads(o.strip().splitlines()[-1]) for o in outs]
            rate = sum(r["iterations"] / r["seconds"] for r in runs)
            if k == 1:
                one = rate
            vs = f", {rate / one:.2f}x the throughput of one run" if one else ""
            print(f"  {k} at once ({max(1, cores // k)} threads each): median s per iteration "
                  + ", ".join(f"{r['median']:.3f}" for r in runs)
                  + f" ({', '.join(str(r['iterations']) for r in runs)} iterations); "
                  + f"{rate:.2f} iterations/s in all{vs}")
            if min(r["iterations"] for r in runs) < 3:
                print(f"    fewer than 3 iterations in a run: too short to read; raise --duration (now "
                      f"{args.duration:g} s)")
            if "kernel_s" in runs[0]:
                r = runs[0]
                print(f"    alone, profiled: the GPU runs {r['kernels']:.0f} kernels and copies in {r['kernel_s']:.3f} s "
                      f"of each {r['median']:.3f} s iteration ({r['kernel_s'] / r['median']:.0%} busy; processes "
                      f"that take turns on the GPU add at most {r['median'] / r['kernel_s']:.1f}x)")


if __name__ == "__main__":
    main()
