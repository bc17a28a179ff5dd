"""How long will this grid take here? An estimate from timing a few real learning steps.

`estimate(jobs)` is what the notebooks' first cell prints. It is measured on this machine, now
(so a machine shared with other work gives a longer estimate), with the preset's sizes:

1. a small dataset of uniform-random-policy episodes of each domain is collected (in memory);
2. for every distinct (method, config) of the grid, ``probe_steps`` learning steps of the real
   trainer run on it in a temporary folder (nothing under ``outputs/`` is written), with torch
   limited to the threads a pool worker gets (`momawb.sweep`: cores // workers); the median
   time between consecutive steps is the step time. MOMA-PPO is timed with ``l_eps = inf``, so
   every model rollout runs its full k steps (the cost without truncation: an upper bound);
3. greedy evaluations are timed once per episode count (up to 10 episodes, scaled linearly);
4. a job costs steps x step time + its periodic evaluations (``eval_every``, ``eval_episodes``)
   + ``final_evaluations`` x ``job.eval_episodes`` episodes; each world model (one per dataset,
   MOMA-PPO) costs its steps x step time, at most (early stopping ends it sooner);
5. world models and jobs are packed on the workers as `momawb.sweep.sweep` will run them
   (`momawb.workers.makespan` of `momawb.sweep.tasks`: world models beside the model-free jobs,
   each MOMA-PPO job after its world model; or world models, then jobs, where the sweep does
   that), plus the start-up of the pool's worker processes (a fresh interpreter importing
   torch and momawb, timed beside the probes).

Not in the estimate: generating datasets that are not cached yet (e.g. Reacher's expert
training), runs that already finished (a re-run skips them, so it takes less), and on CUDA the
slowdown of several workers sharing one GPU. It is an estimate, and says so.
"""
from __future__ import annotations

import importlib
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

__all__ = ["Estimate", "estimate", "probe_dataset", "RandomTeam"]


class RandomTeam:
    """`momawb.evaluation.Team` acting uniformly at random (discrete indices or [-1, 1]^d)."""

    memory_length = 0

    def __init__(self, domain, seed: int = 0):
        self.domain, self.gen = domain, torch.Generator().manual_seed(seed)

    def act(self, obs: torch.Tensor, history=None, greedy: bool = True) -> torch.Tensor:
        b, n = obs.shape[0], self.domain.n_agents
        if self.domain.discrete:
            return torch.randint(self.domain.n_actions, (b, n, 1), generator=self.gen).float()
        return torch.rand((b, n, self.domain.act_dim), generator=self.gen) * 2 - 1


def probe_dataset(domain, rows: int = 2000, seed: int = 0):
    """About ``rows`` transitions of `RandomTeam` episodes in ``domain`` (a `Dataset`; the last
    step of every episode, which has no recorded next state, is dropped)."""
    from momawb.datasets import Dataset
    from momawb.evaluation import evaluate
    episodes = max(2, math.ceil(rows / max(1, domain.episode_length - 1)))
    tr = evaluate(RandomTeam(domain, seed), domain, episodes=episodes, seed=seed, greedy=False,
                  record=True).trajectories
    s, a, r, alive = tr["states"], tr["actions"], tr["rewards"], tr["alive"]
    keep = alive[:, :-1] & alive[:, 1:]                      # (E, T-1): transitions t -> t+1
    last = keep & ~np.concatenate([keep[:, 1:], np.zeros((len(keep), 1), bool)], 1)
    n = int(keep.sum())
    return Dataset(s[:, :-1][keep], a[:, :-1][keep].reshape(n, -1), r[:, :-1][keep], s[:, 1:][keep],
                   np.zeros(n, bool), last[keep], meta={"name": "probe"}, source="random-policy probe dataset")


@dataclass
class Estimate:
    """Seconds of the grid on ``workers`` workers, and what they are made of."""

    seconds: float
    workers: int
    jobs: int
    job_seconds: dict[str, float]          # method -> summed seconds over its jobs
    world_model_seconds: float
    step_seconds: dict[str, float]         # method (and 'world_model') -> seconds per learning step
    probe_seconds: float
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        from momawb.train import DISPLAY
        total = sum(self.job_seconds.values())
        per = ", ".join(f"{DISPLAY.get(m, m)} {_dur(s)}" for m, s in sorted(self.job_seconds.items(), key=lambda x: -x[1]))
        steps = ", ".join(f"{DISPLAY.get(m, m)} {1000 * s:.1f} ms" for m, s in self.step_seconds.items())
        lines = [f"estimated wall time of the grid: about {_dur(self.seconds)} on {self.workers} worker(s), "
                 f"from scratch ({self.jobs} jobs, {_dur(total)} of training and evaluation summed"
                 + (f", world models {_dur(self.world_model_seconds)}" if self.world_model_seconds else "") + ")",
                 f"  per method, summed: {per}" if per else "  no jobs",
                 f"  measured step times: {steps}" if steps else "",
                 f"  an estimate: {self.probe_seconds:.1f} s spent timing a few learning steps of each method at "
                 "this preset's sizes on this machine now, plus the evaluation episodes (momawb.estimate); "
                 "early stopping, truncated rollouts and other load change it; finished runs are skipped "
                 "on a re-run; datasets not yet generated add time"]
        return "\n".join([line for line in lines if line] + [f"  note: {n}" for n in self.notes])

    @property
    def brief(self) -> str:
        return f"about {_dur(self.seconds)} on {self.workers} worker(s)"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))


def _dur(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _timed_run_class():
    from momawb.runs import Run

    class TimedRun(Run):
        """A `Run` that only records when each logged step ends (no files, no checkpoints)."""

        def log(self, step, metrics) -> None:
            self.stamps = getattr(self, "stamps", []) + [time.perf_counter()]

        def save(self, state, step):
            return self.checkpoint_path

        def load(self):
            return None
    return TimedRun


def _step_time(run) -> float:
    stamps = getattr(run, "stamps", [])
    if len(stamps) < 2:
        return float("nan")
    return float(np.median(np.diff(stamps)))


def _probe_config(config, steps: int):
    """``config`` cut to ``steps`` steps, logging every step, no periodic evaluation/checkpoint."""
    keys = config.keys()
    kw = {"steps": steps, "log_every": 1, "eval_every": 0, "checkpoint_every": steps}
    if "l_eps" in keys:
        kw["l_eps"] = float("inf")
    return config.replace(**{k: v for k, v in kw.items() if k in keys})


def estimate(jobs: Sequence, backend: str = "local", workers: int | None = None, probe_steps: int = 5,
             final_evaluations: int = 1, workers_per_gpu: int | None = None) -> Estimate:
    """Estimate the wall time of ``jobs`` (`momawb.sweep.Job`) run by `momawb.sweep.sweep` with
    ``backend``, ``workers`` (None: the sweep's default, one per core) and ``workers_per_gpu``
    (as the sweep's: the pool has one worker per GPU slot). ``final_evaluations``:
    greedy evaluations of ``job.eval_episodes`` episodes after training (2 when the notebook
    also labels the final episodes, as Reacher's conventions). See the module docstring."""
    from momawb import domains
    from momawb.jobs import _world_model_config, needs_world_model
    from momawb.sweep import _fits, _wm_key, overlapped, tasks
    from momawb.workers import gpu_sharing_advice, gpu_slots, makespan, pool_size, runs_per_gpu, threads_per_worker
    from momawb.train import METHODS, method_config

    t_start = time.perf_counter()
    slots = gpu_slots(workers_per_gpu)
    workers = 1 if backend == "serial" else pool_size(workers, slots)
    startup = _WorkerStartup() if backend == "local" and workers > 1 and jobs else None
    threads = threads_per_worker(workers) if workers > 1 else torch.get_num_threads()
    old_threads = torch.get_num_threads()
    notes: list[str] = []
    step_s: dict[str, float] = {}
    probe: dict[str, tuple[float, object, object]] = {}   # config key -> (step seconds, team, domain)
    eval_s: dict[tuple, float] = {}
    datasets: dict[str, object] = {}
    wm: dict[tuple, tuple[float, int]] = {}           # (domain, dataset, data seed, config) -> (step s, steps)
    wm_probe: dict[str, tuple[float, object]] = {}
    TimedRun = _timed_run_class()
    configs: dict = {}

    def config_of(j):
        k = (j.method, j.notebook, j.preset, j.overrides)
        if k not in configs:
            configs[k] = method_config(j.method, j.notebook, j.preset, j.section_overrides(j.method))
        return configs[k]

    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="momawb-estimate-") as tmp:
            for j in jobs:
                domain = domains.make(j.domain, **dict(j.domain_kwargs))
                if j.domain not in datasets:
                    datasets[j.domain] = probe_dataset(domain)
                data = datasets[j.domain]
                config = config_of(j)
                key = json.dumps([j.method, j.domain, config.to_dict()], sort_keys=True, default=str)
                extra = {}
                if needs_world_model(j, config):
                    wcfg = _world_model_config(j)
                    wkey = json.dumps([j.domain, wcfg.to_dict()], sort_keys=True, default=str)
                    if wkey not in wm_probe:
                        from momawb.model_trainer import fit_world_model
                        run = TimedRun(f"wm-{len(wm_probe)}", wcfg, root=tmp, device=getattr(wcfg, "device", None))
                        model = fit_world_model(data, domain, _probe_config(wcfg, probe_steps), run, progress=False)
                        wm_probe[wkey] = (_step_time(run), model)
                        step_s["world_model"] = wm_probe[wkey][0]
                    # one world model per dataset (momawb.sweep fits each once)
                    wm[_wm_key(j)] = (wm_probe[wkey][0], wcfg.steps)
                    extra["world_model"] = wm_probe[wkey][1]
                if key in probe:
                    continue
                mod, fn = METHODS[j.method][0].split(":")
                train_fn = getattr(importlib.import_module(mod), fn)
                run = TimedRun(f"probe-{len(probe)}", config, root=tmp, device=getattr(config, "device", None))
                try:
                    team = train_fn(_probe_config(config, probe_steps), data, domain, run, progress=False, **extra)
                except Exception as e:  # the estimate never stops a notebook; the sweep will report it
                    notes.append(f"{j.method} could not be timed ({type(e).__name__}: {e}); it is left out")
                    probe[key] = (float("nan"), None, domain)
                    continue
                probe[key] = (_step_time(run), team, domain)
                step_s[j.method] = probe[key][0]

            def eval_time(team, domain, episodes: int) -> float:
                k = (domain.name, domain.task, episodes, int(getattr(team, "memory_length", 0) or 0))
                if k not in eval_s:
                    e = min(episodes, 10)
                    t0 = time.perf_counter()
                    from momawb.evaluation import evaluate
                    evaluate(team, domain, episodes=e)
                    eval_s[k] = (time.perf_counter() - t0) * episodes / e
                return eval_s[k]

            durations, per_method = [], {}
            for j in jobs:
                config = config_of(j)
                key = json.dumps([j.method, j.domain, config.to_dict()], sort_keys=True, default=str)
                t_step, team, domain = probe[key]
                if team is None:
                    durations.append(0.0)
                    continue
                n_eval = (config.steps // config.eval_every + (config.steps % config.eval_every > 0)
                          if getattr(config, "eval_every", 0) else 0)
                t = (config.steps * t_step + n_eval * eval_time(team, domain, config.eval_episodes)
                     + final_evaluations * eval_time(team, domain, j.eval_episodes))
                durations.append(t)
                per_method[j.method] = per_method.get(j.method, 0.0) + t
    finally:
        torch.set_num_threads(old_threads)
    wm_times = [s * n for s, n in wm.values()]
    order = tasks(jobs)                          # the world models, then the jobs
    if overlapped(order, backend, workers):
        fits = [math.prod(wm.get(t.key[1], (0.0, 0))) for t in _fits(order)]
        seconds = makespan(order, fits + durations, workers)
    else:
        seconds = _pack(wm_times, workers) + _pack(durations, workers)
    seconds += startup.seconds() if startup else 0.0
    per_gpu = runs_per_gpu(min(workers, len(jobs)), slots, torch.cuda.is_available()) if backend == "local" else 0
    if per_gpu > 1:
        advice = gpu_sharing_advice(per_gpu)
        notes.append(f"up to {per_gpu} runs share a GPU; the packing assumes they do not slow each other"
                     + (f": {advice}, so expect longer" if advice else ""))
    return Estimate(seconds, workers, len(jobs), per_method, sum(wm_times), step_s,
                    time.perf_counter() - t_start, notes)


class _WorkerStartup:
    """Times a fresh interpreter importing what a pool worker imports (torch, momawb), started
    when the probes start and running beside them, as the sweep's spawned workers do."""

    def __init__(self):
        import subprocess
        import sys
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-c", "import momawb.sweep, momawb.train"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def seconds(self) -> float:
        self.proc.wait()
        return time.perf_counter() - self.t0 if self.proc.returncode == 0 else 0.0


def _pack(durations: Sequence[float], workers: int) -> float:
    """Makespan of ``durations`` taken in order by the first free of ``workers`` workers."""
    from momawb.workers import Task, makespan
    return makespan([Task(None, None)] * len(durations), durations, max(1, workers))
