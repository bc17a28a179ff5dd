"""Sweeps: a grid of (method, dataset, task, seed) jobs, run locally or on Ray.

    jobs = grid(methods=["iql", "moma_ppo"], datasets=["favorable"], seeds=range(10),
                domain="game", notebook="coordination_game", preset="ci")
    rows = sweep(jobs)                       # local process pool sized to the cores
    rows = sweep(jobs, backend="ray")        # Ray tasks on ray.init(address=...) (local if None)

Every job (`momawb.jobs`) is ``momawb.train.train``: it resumes from its checkpoint and skips
training when its ``result.json`` exists, so a sweep interrupted at any point and started again
skips finished jobs and resumes unfinished ones. Datasets are generated first, each once;
MOMA-PPO's world models are fitted once per dataset (PAPER.md: shared by all seeds and
observation settings), each before the MOMA-PPO jobs that use it, so parallel jobs never race
on one (`momawb.workers` runs them). This module decides the order; `momawb.jobs` holds the
grids and what one job does.
The rows go to a notebook's ``results.json`` through `momawb.results`.
"""
from __future__ import annotations

import json
import warnings
from concurrent.futures import as_completed
from typing import Any, Callable, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from momawb.jobs import (CENTRALIZED, Job, _fit_config, fit_world_model_job, generator_overrides, grid,
                         needs_world_model, observation_grid, prepare_dataset_job, run_job, trained_team)
from momawb.workers import (Task, call_with_threads, gpu_sharing_advice, gpu_slots, pool_size, process_pool,
                            ray_resources, run_on_ray, run_tasks, runs_per_gpu, threads_per_worker)

__all__ = ["Job", "grid", "observation_grid", "run_job", "trained_team", "fit_world_model_job", "sweep", "tasks",
           "overlapped", "gpu_slots", "ray_resources", "process_pool", "CENTRALIZED"]


def _unique(jobs: Iterable[Job], key: Callable[[Job], Any]) -> list[Job]:
    """The first job of each ``key`` value, in order."""
    seen, out = set(), []
    for j in jobs:
        k = key(j)
        if k not in seen:
            seen.add(k)
            out.append(j)
    return out


def _dataset_jobs(jobs: Sequence[Job]) -> list[Job]:
    return _unique(jobs, lambda j: (j.domain, j.dataset, j.data_seed, j.root,
                                    json.dumps(generator_overrides(j), sort_keys=True)))

def _wm_key(job: Job) -> tuple:
    """Jobs with one key share one world model (`fit_world_model_job` fits it once)."""
    return (job.domain, job.dataset, job.data_seed, job.root, json.dumps(_fit_config(job).to_dict(), sort_keys=True),
            json.dumps(generator_overrides(job), sort_keys=True))


def _fits(order: Sequence[Task]) -> list[Task]:
    """The world-model fits of a `tasks` order (the tasks that hold a key; they come first)."""
    return [t for t in order if t.key is not None]


def _wm_jobs(jobs: Sequence[Job]) -> list[Job]:
    """The jobs whose world models `sweep` fits, one per `_wm_key`."""
    return [t.job for t in _fits(tasks(jobs))]


def _fit_world_model_task(job: Job) -> None:
    """`fit_world_model_job` on a worker: the model stays on disk, not sent back."""
    fit_world_model_job(job)


def sweep(jobs: Sequence[Job], backend: str = "local", workers: int | None = None,
          address: str | None = None, progress: bool = True,
          on_result: Callable[[dict], None] | None = None, workers_per_gpu: int | None = None) -> list[dict]:
    """Run ``jobs``; ``backend`` is 'serial', 'local' (process pool) or 'ray'. Rows come back
    in job order; ``on_result(row)`` sees each as it finishes (live plots).

    Each dataset is generated once, first. On the local pool the world models are then fitted
    while the model-free jobs already train, and each MOMA-PPO job starts as soon as its world
    model is fitted, before the model-free jobs still waiting (MOMA-PPO is the longest job of
    every preset, so it should not be left alone at the end; `workers.run_tasks`). Serial and
    Ray run world models, then jobs.

    ``workers_per_gpu`` places that many jobs on each visible GPU at once (a MOMA-PPO run keeps
    an H200 busy 42-58 % of the time with CUDA graphs, less without): the local pool gets
    ``n_gpus * workers_per_gpu`` workers, each pinned to one GPU through ``CUDA_VISIBLE_DEVICES``;
    on Ray each task asks for ``num_gpus = 1 / workers_per_gpu``. Ignored where CUDA is not
    available; without ``workers_per_gpu`` every local worker uses the default GPU. Processes on
    one GPU take turns unless NVIDIA's MPS daemon runs (`workers.mps_running`; measured with
    graphs, README "Speed on a GPU": without it at most about 2x the throughput of one run, 1.6-2.1x
    already at two; with it 5.05x at 8 per H200), so a local sweep that puts more than two runs
    on a GPU without MPS warns (`workers.gpu_sharing_advice`).

    On the overlapped local schedule (`overlapped`) a job that fails stops no other (their runs
    and rows are saved) and its error is raised at the end; in the phases (serial, Ray, one
    worker) the first error stops the sweep."""
    if backend not in ("serial", "local", "ray"):
        raise ValueError(f"backend must be 'serial', 'local' or 'ray', got {backend!r}")
    if workers_per_gpu is not None and workers_per_gpu < 1:
        raise ValueError(f"workers_per_gpu must be >= 1, got {workers_per_gpu}")
    jobs = list(jobs)
    slots = gpu_slots(workers_per_gpu)
    workers = pool_size(workers, slots)
    _warn_if_gpus_shared(backend, min(workers, len(jobs)), slots)
    rows: list[dict | None] = [None] * len(jobs)
    order = tasks(jobs)
    wm_jobs = [t.job for t in _fits(order)]
    pool = None  # one pool of spawned workers for every phase (each worker imports torch once)
    try:
        dataset_jobs = _dataset_jobs(jobs)
        if backend == "local" and len(dataset_jobs) == 1:   # one dataset: its generator may use the cores
            prepare_dataset_job(dataset_jobs[0], workers=workers)
        else:
            pool = _phase(prepare_dataset_job, dataset_jobs, False, rows, backend, workers, address, progress,
                          on_result, pool, slots, workers_per_gpu)
        if overlapped(order, backend, workers):
            pool = _overlapped(order, rows, workers, progress, on_result, pool, slots)
        else:
            for fn, phase_jobs, collect in ((fit_world_model_job, wm_jobs, False), (run_job, jobs, True)):
                pool = _phase(fn, phase_jobs, collect, rows, backend, workers, address, progress, on_result, pool,
                              slots, workers_per_gpu)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return [r for r in rows if r is not None]


def _warn_if_gpus_shared(backend: str, runs: int, slots: Sequence[int]) -> None:
    """Warn when a local pool puts more runs on a GPU than it serves without MPS
    (`workers.gpu_sharing_advice`); ``runs`` at most at once, ``slots`` from `gpu_slots`."""
    if backend == "local" and (advice := gpu_sharing_advice(runs_per_gpu(runs, slots, torch.cuda.is_available()))):
        warnings.warn(advice, stacklevel=3)


def overlapped(order: Sequence[Task], backend: str, workers: int) -> bool:
    """Whether `sweep` runs the `tasks` ``order`` (world models and trainings) together: on a
    local pool of several workers, when there is something to train while a world model fits.
    Otherwise the world models are fitted first (a single one in the main process, with all its
    threads). MOMA-PPO jobs that need no world model (`needs_world_model`) start at once."""
    fits = _fits(order)
    return backend == "local" and workers > 1 and (len(fits) > 1 or any(t.key is None and t.needs is None
                                                                        for t in order))


def tasks(jobs: Sequence[Job]) -> list[Task]:
    """The world models of ``jobs`` (one per `_wm_key`), then the jobs, as `workers.run_tasks`
    tasks: each MOMA-PPO job on a learned model needs its world model; world models first, then
    MOMA-PPO jobs, then the others, in grid order."""
    keys = [("world model", _wm_key(j)) if needs_world_model(j) else None for j in jobs]
    fits = _unique((jk for jk in zip(jobs, keys) if jk[1] is not None), lambda jk: jk[1])
    return ([Task(_fit_world_model_task, j, key=k, priority=0) for j, k in fits]
            + [Task(run_job, j, needs=k, priority=1 if j.method == "moma_ppo" else 2) for j, k in zip(jobs, keys)])


def _overlapped(order, rows, workers, progress, on_result, pool, slots):
    """The `tasks` ``order`` on one local pool (`workers.run_tasks`); job rows into ``rows``."""
    n_fits = len(_fits(order))
    wm_bar = tqdm(total=n_fits, desc="world models", disable=not progress or not n_fits)
    bar = tqdm(total=len(rows), desc="jobs", disable=not progress)

    def done(i: int, out: Any) -> None:
        if i < n_fits:
            wm_bar.update()
            return
        bar.update()
        rows[i - n_fits] = out
        if on_result is not None:
            on_result(out)

    def failed(i: int, error: BaseException) -> None:
        j = order[i].job
        what = "world model" if i < n_fits else f"{j.method} seed {j.seed}"
        tqdm.write(f"{what} on {j.dataset} ({j.task}) failed: {type(error).__name__}: {error}; "
                   "the other jobs go on and the error is raised when they are done")

    if pool is None:
        pool = process_pool(workers, slots)
    try:
        run_tasks(order, pool, workers, threads_per_worker(workers), done, failed)
    finally:
        wm_bar.close()
        bar.close()
    return pool


def _phase(fn, phase_jobs, collect, rows, backend, workers, address, progress, on_result, pool, slots=(),
           workers_per_gpu=None):
    """Run one phase (datasets, world models or jobs); returns the process pool for reuse."""
    if not phase_jobs:
        return pool
    desc = {prepare_dataset_job: "datasets", fit_world_model_job: "world models"}.get(fn, "jobs")
    bar = tqdm(total=len(phase_jobs), desc=desc, disable=not progress)
    task = _fit_world_model_task if fn is fit_world_model_job else fn

    def done(i: int, out: Any) -> None:
        bar.update()
        if collect:
            rows[i] = out
            if on_result is not None:
                on_result(out)

    if backend == "serial" or (backend == "local" and (workers == 1 or len(phase_jobs) == 1)):
        for i, j in enumerate(phase_jobs):
            done(i, fn(j, threads=None) if fn is run_job else fn(j))
    elif backend == "local":
        if pool is None:
            pool = process_pool(workers, slots)
        threads = threads_per_worker(workers)
        futs = {pool.submit(call_with_threads, task, j, threads): i for i, j in enumerate(phase_jobs)}
        for f in as_completed(futs):
            done(futs[f], f.result())
    else:
        run_on_ray(task, phase_jobs, address, done, workers_per_gpu)
    bar.close()
    return pool
