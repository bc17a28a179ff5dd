"""The gradient-step loop every momawb trainer shares (world model, MOMA-PPO, baselines).

`train_loop` drives one `runs.Run`: it resumes from the run's checkpoint, shows tqdm progress,
logs metrics, evaluates and checkpoints periodically, and guards against NaN/inf with
`TrainingDiverged`, an error naming the step and the last good checkpoint (which it never
touches). Metrics may be 0-d tensors: on an accelerator they are read (one host sync) only at
log and checkpoint steps. `iterate_minibatches` is the shuffled minibatch pass of the on-policy
and model trainers.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from momawb.allocator import keep_freed_memory
from momawb.runs import Run

__all__ = ["TrainingDiverged", "check_finite", "metrics_as_floats", "train_loop", "iterate_minibatches",
           "padded_minibatch"]


class TrainingDiverged(RuntimeError):
    """A loss or metric became NaN or inf; the last good checkpoint is left intact. ``step`` and
    ``run_dir`` say where (None when unknown)."""

    def __init__(self, message: str, step: int | None = None, run_dir: Path | None = None):
        super().__init__(message)
        self.step, self.run_dir = step, run_dir

    def __reduce__(self):   # survives a process pool's pickling
        return (type(self), (str(self), self.step, self.run_dir))


def check_finite(metrics: Mapping[str, float], step: int, run: Run | None, note: str = "") -> None:
    bad = {k: v for k, v in metrics.items() if not math.isfinite(float(v))}
    if bad:
        where = (f"the last good checkpoint {run.checkpoint_path} is intact"
                 if run is not None and run.checkpoint_path.exists() else "no checkpoint was written yet")
        raise TrainingDiverged(f"non-finite values at step {step}{note}: {bad}; {where}. Lower the learning "
                               "rate, check the dataset for outliers, or resume from the checkpoint.",
                               step, None if run is None else run.dir)


def metrics_as_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``metrics`` with every tensor read as a Python float, all of them in one transfer (one host
    synchronisation on an accelerator)."""
    keys = [k for k, v in metrics.items() if isinstance(v, torch.Tensor)]
    if not keys:
        return dict(metrics)
    values = torch.stack([metrics[k].detach().reshape(()).to(torch.float64) for k in keys]).tolist()
    return {**metrics, **dict(zip(keys, values))}


def _on_accelerator(metrics: Mapping[str, Any]) -> bool:
    return any(isinstance(v, torch.Tensor) and v.device.type != "cpu" for v in metrics.values())


def train_loop(run: Run, algo: Any, n_steps: int, update: Callable[[int], Mapping[str, Any]], *,
               log_every: int = 100, eval_every: int = 0,
               evaluate: Callable[[int], Mapping[str, float]] | None = None,
               checkpoint_every: int = 1000, desc: str = "train",
               stop: Callable[[int, Mapping[str, Any]], bool] | None = None,
               progress: bool = True, read_every_step: bool | None = None) -> int:
    """The loop every momawb trainer shares.

    ``algo`` has ``state_dict()``/``load_state_dict()``; ``update(step)`` does one learning step
    and returns named floats or 0-d tensors. Resumes from ``run``'s checkpoint when there is one.
    Evaluation metrics are logged under ``eval/``. ``stop(step, metrics)`` may end training early
    (early stopping). Returns the number of steps done.

    The NaN/inf guard reads the metrics after every step (``read_every_step=True``; the default
    when they are Python floats or CPU tensors) or, for tensors on an accelerator (default
    ``None`` = decide from the first step's metrics), only at the steps that log or checkpoint:
    no host synchronisation in between, and a divergence is caught at the next such step, before
    any checkpoint is written, so the last good checkpoint stays intact either way.

    One process at a time trains a run (`Run.exclusive`): another one training it makes this
    call wait for it (a `RunBusy` warning), then resume from its checkpoint. The process keeps
    freed memory for reuse from here on (`allocator.keep_freed_memory`: fewer page faults).
    """
    keep_freed_memory()
    with run.exclusive():                  # from loading the checkpoint to the last save
        loaded = run.load()
        start, stopped = 0, False
        if loaded is not None:
            state, start = loaded
            stopped = bool(state.pop("_stopped", False))
            algo.load_state_dict(state)
        if start >= n_steps or stopped:
            return start
        bar = tqdm(range(start, n_steps), desc=desc, initial=start, total=n_steps,
                   disable=not progress, leave=False, mininterval=1.0)
        step, finite, unread = start, None, start     # lazy reads: all-finite flag on the device since step `unread`
        for step in bar:
            metrics = dict(update(step))
            if read_every_step is None:
                read_every_step = not _on_accelerator(metrics)
            if read_every_step:
                metrics = metrics_as_floats(metrics)
                check_finite(metrics, step, run)
            else:
                tensors = [v.detach().reshape(()) for v in metrics.values() if isinstance(v, torch.Tensor)]
                check_finite({k: v for k, v in metrics.items() if not isinstance(v, torch.Tensor)}, step, run)
                if tensors:
                    ok = torch.stack(tensors).isfinite().all()
                    finite = ok if finite is None else finite & ok
            done = step + 1
            ended = stop is not None and stop(done, metrics)
            log_now = log_every and (done % log_every == 0 or done == n_steps or ended)
            save_now = ended or (checkpoint_every and (done % checkpoint_every == 0 or done == n_steps))
            if not read_every_step and (log_now or save_now):
                metrics = metrics_as_floats(metrics)
                if finite is not None and not bool(finite):     # floats were checked at their step; tensors here
                    check_finite({**metrics, "any metric": float("nan")}, step, run,
                                 f" (metrics are read at log and checkpoint steps: the first non-finite one is "
                                 f"between steps {unread} and {step})")
                finite, unread = None, done
            row = dict(metrics) if log_now else {}
            if evaluate is not None and eval_every and (done % eval_every == 0 or done == n_steps or ended):
                row.update({f"eval/{k}": v for k, v in evaluate(done).items()})
            if row:
                run.log(done, row)
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(row.items())[:3]}, refresh=False)
            if ended:
                run.save({**algo.state_dict(), "_stopped": True}, done)
                return done
            if save_now:
                run.save(algo.state_dict(), done)
        return n_steps


def iterate_minibatches(n: int, batch_size: int, rng: np.random.Generator,
                        device: torch.device | str = "cpu") -> Iterable[torch.Tensor]:
    """Index tensors on ``device`` of one shuffled pass over ``n`` items in minibatches (last
    partial one kept). The permutation is drawn from ``rng`` and crosses to the device once."""
    perm = torch.as_tensor(rng.permutation(n), device=device)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def padded_minibatch(idx: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``idx`` (m,), m <= ``size``, padded to (size,) by repeating its first index, and the
    (size,) float32 weights: 1 for its m rows, 0 for the padding (a weighted mean over the padded
    minibatch is the mean over ``idx``). For CUDA graphs, which replay one shape."""
    m = len(idx)
    weights = torch.zeros(size, device=idx.device)
    weights[:m] = 1.0
    return (idx if m == size else torch.cat([idx, idx[:1].expand(size - m)])), weights
