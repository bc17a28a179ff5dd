"""Where a sweep's jobs run: the local process pool (optionally several workers per GPU), Ray,
and the order in which the pool takes them (`run_tasks`).

`momawb.sweep` decides *what* runs (datasets, world models, trainings); this module only runs
callables on workers. It imports nothing of momawb, so there are no import cycles.
"""
from __future__ import annotations

import heapq
import os
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, Callable, Hashable, Sequence

__all__ = ["Task", "run_tasks", "makespan", "threads_per_worker", "gpu_slots", "mps_running", "pool_size",
           "runs_per_gpu", "gpu_sharing_advice", "process_pool", "ray_resources", "run_on_ray", "call_with_threads"]


@dataclass(frozen=True)
class Task:
    """``fn(job)`` on a worker. It starts only once the task whose ``key`` equals ``needs`` has
    finished; among tasks ready together, the lowest ``priority`` starts first (then list order)."""

    fn: Callable
    job: Any
    key: Hashable = None               # what later tasks may wait for (None: nothing)
    needs: Hashable = None             # the key of the task to finish first (None: ready at once)
    priority: int = 0


class _Order:
    """`run_tasks`' order: ready tasks by (priority, list index); a task's dependents become
    ready when it finishes. Raises ValueError when a task needs a key that no task has."""

    def __init__(self, tasks: Sequence[Task]):
        self.tasks = tasks
        unknown = {t.needs for t in tasks if t.needs is not None} - {t.key for t in tasks if t.key is not None}
        if unknown:
            raise ValueError(f"tasks need keys that no task provides: {sorted(map(str, unknown))}")
        self.waiting: dict[Hashable, list[int]] = {}
        for i, t in enumerate(tasks):
            if t.needs is not None:
                self.waiting.setdefault(t.needs, []).append(i)
        self.ready = [(t.priority, i) for i, t in enumerate(tasks) if t.needs is None]
        heapq.heapify(self.ready)

    def pop(self) -> int:
        return heapq.heappop(self.ready)[1]

    def finished(self, i: int) -> None:
        for j in self.waiting.pop(self.tasks[i].key, []):
            heapq.heappush(self.ready, (self.tasks[j].priority, j))


def run_tasks(tasks: Sequence[Task], pool: ProcessPoolExecutor, workers: int, threads: int,
              done: Callable[[int, Any], None],
              failed: Callable[[int, BaseException], None] | None = None) -> None:
    """Run ``tasks`` on ``pool`` with at most ``workers`` in flight; ``done(i, result)`` for task
    ``i`` as it finishes, in the main process.

    Only ``workers`` tasks are handed to the pool at a time, so a task that becomes ready later
    (a MOMA-PPO training once its world model is fitted) still goes before lower-priority tasks
    that were ready earlier, and the longest jobs do not end up alone at the end of a sweep.

    A task that raises does not stop the others: the tasks that need it are skipped, everything
    else runs, and the first error is raised at the end (the finished jobs are on disk, so the
    sweep started again resumes from there); ``failed(i, error)`` hears of each failure when it
    happens. Raises ValueError when a task needs a key that no
    task has (it would never start)."""
    order = _Order(tasks)
    running: dict = {}
    errors: list[BaseException] = []
    while order.ready or running:
        while order.ready and len(running) < workers:
            i = order.pop()
            running[pool.submit(call_with_threads, tasks[i].fn, tasks[i].job, threads)] = i
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for f in finished:
            i = running.pop(f)
            if f.exception() is not None:
                errors.append(f.exception())
                if failed is not None:
                    failed(i, f.exception())
                continue
            order.finished(i)
            done(i, f.result())
    if errors:
        raise errors[0]


def makespan(tasks: Sequence[Task], seconds: Sequence[float], workers: int) -> float:
    """The wall time `run_tasks` would take if task ``i`` took ``seconds[i]`` on any worker
    (`momawb.estimate` uses it to pack a grid as the sweep will run it)."""
    order = _Order(tasks)
    clock, running = 0.0, []          # heap of (end time, task)
    while order.ready or running:
        while order.ready and len(running) < workers:
            i = order.pop()
            heapq.heappush(running, (clock + seconds[i], i))
        clock, i = heapq.heappop(running)
        order.finished(i)
    return clock


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` processes sharing this machine's cores (at least 1)."""
    return max(1, (os.cpu_count() or 1) // workers)


def call_with_threads(fn: Callable, job: Any, threads: int):
    """``fn(job)`` with ``threads`` torch threads (what a pool worker runs)."""
    import torch
    torch.set_num_threads(threads)
    return fn(job)


def gpu_slots(workers_per_gpu: int | None, n_gpus: int | None = None) -> list[int]:
    """The GPU index of each local worker: every visible GPU ``workers_per_gpu`` times (empty
    when it is None or no GPU is visible)."""
    if not workers_per_gpu:
        return []
    if n_gpus is None:
        import torch
        n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [g for g in range(n_gpus) for _ in range(workers_per_gpu)]


def mps_running() -> bool:
    """Whether NVIDIA's MPS control daemon is listening on this machine: its control pipe exists in
    ``$CUDA_MPS_PIPE_DIRECTORY`` (default ``/tmp/nvidia-mps``, NVIDIA's MPS documentation; a pipe
    left by a killed daemon reads as running). Under MPS the kernels of several processes on one
    GPU run side by side; without it the processes take turns (README "Speed on a GPU")."""
    return os.path.exists(os.path.join(os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or "/tmp/nvidia-mps", "control"))


def pool_size(workers: int | None, slots: Sequence[int]) -> int:
    """The local pool's processes: ``workers`` (None: one per `gpu_slots` slot, or one per core),
    at most one per slot."""
    n = workers or len(slots) or max(1, os.cpu_count() or 1)
    return min(n, len(slots)) if slots else n


def runs_per_gpu(workers: int, slots: Sequence[int], cuda: bool) -> int:
    """The most of ``workers`` local workers that one GPU gets: from the `gpu_slots` the pool hands
    out (the first ``workers``), or, without slots, all of them on the default GPU where ``cuda``
    (0 without CUDA)."""
    if slots:
        return max(Counter(slots[:workers]).values(), default=0)
    return workers if cuda else 0


TURNS_WITHOUT_MPS = 2   # runs on one GPU beyond which MPS is needed (README "Speed on a GPU")


def gpu_sharing_advice(per_gpu: int) -> str | None:
    """What to tell a user who puts ``per_gpu`` runs on one GPU: None for at most
    ``TURNS_WITHOUT_MPS`` or with MPS running, else why and what to do (measured on an H200)."""
    if per_gpu <= TURNS_WITHOUT_MPS or mps_running():
        return None
    return (f"{per_gpu} runs on one GPU without NVIDIA MPS take turns on it (CUDA-graph MOMA-PPO runs on an H200: "
            f"at most about 2x the throughput of one run, most of it already with {TURNS_WITHOUT_MPS}). Start the MPS "
            "daemon "
            "first (`nvidia-cuda-mps-control -d`; 5.05x at 8 per GPU), or use workers_per_gpu="
            f"{TURNS_WITHOUT_MPS} (README 'Speed on a GPU')")


def _worker_init(parent: int, queue=None) -> None:
    """Pool initializer. A worker ends itself when the process that started the sweep is gone
    (a notebook kernel or papermill killed): otherwise it would finish its job, writing into the
    runs a rerun is about to resume, and then wait forever for the next one. With ``queue``
    (`gpu_slots`), this worker sees only the GPU it takes from it (set before torch initialises
    CUDA here)."""
    if queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(queue.get())
    threading.Thread(target=_exit_with_parent, args=(parent,), name="momawb-parent-watch", daemon=True).start()


def _exit_with_parent(parent: int, every: float = 0.5) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)      # as if the whole sweep was killed: each run resumes from its last checkpoint


def process_pool(workers: int, slots: Sequence[int] = ()) -> ProcessPoolExecutor:
    """Spawned workers, which end when this process ends; with ``slots`` (`gpu_slots`), worker i
    sees only GPU ``slots[i]``."""
    ctx = get_context("spawn")
    if not slots:
        return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),))
    queue = ctx.Queue()
    for g in slots[:workers]:
        queue.put(g)
    return ProcessPoolExecutor(min(workers, len(slots)), mp_context=ctx, initializer=_worker_init,
                               initargs=(os.getpid(), queue))


def ray_resources(workers_per_gpu: int | None) -> dict:
    """Ray's per-task resources: one CPU, and a 1/workers_per_gpu share of a GPU when asked."""
    return {"num_cpus": 1, **({"num_gpus": 1.0 / workers_per_gpu} if workers_per_gpu else {})}


def run_on_ray(fn: Callable, jobs: Sequence[Any], address: str | None, done: Callable[[int, Any], None],
               workers_per_gpu: int | None = None) -> None:
    """``fn(job)`` for every job as Ray tasks (one thread each); ``done(i, result)`` as each ends."""
    import ray
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True, **({} if address else {"num_cpus": os.cpu_count() or 1}))
    remote = ray.remote(**ray_resources(workers_per_gpu))(call_with_threads)
    refs = {remote.remote(fn, j, 1): i for i, j in enumerate(jobs)}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for r in ready:
            done(refs[r], ray.get(r))
