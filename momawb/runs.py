"""Run directories, seeding, device choice, atomic checkpoints, resume, metrics logs.

Every trainer in momawb (world model, MOMA-PPO, baselines) goes through this module, so that

* a seed fixes numpy, torch and the env (`seed_everything`, `Run.np_rng`);
* the device is chosen once: CUDA when present, else CPU, or `$MOMAWB_DEVICE` (`pick_device`);
* everything a run writes lives in ``<root>/runs/<name>-<config hash>/`` with ``root`` =
  ``outputs/`` unless ``MOMAWB_OUTPUTS`` or an explicit ``root`` says otherwise;
* a checkpoint holds the trainer's state dict *and* every RNG state and is written atomically
  (temporary file + ``os.replace``), so a run killed at any moment resumes from its last
  checkpoint and, on CPU, ends with exactly the numbers of an uninterrupted run;
* metrics go to ``metrics.csv`` (wide, one row per logged step) and ``metrics.jsonl``; on resume
  the rows past the checkpoint are dropped, so a resumed log equals an uninterrupted one;
* every file of a run survives a crash at any byte or is repaired on resume with a
  `RunFileRepaired` warning naming it: checkpoints, config.json and JSON results are written
  atomically and fsynced (a crash leaves the old file or the new one, never half of one; a
  leftover temporary file is removed on resume); metrics.jsonl is appended to, fsynced before
  every checkpoint, and a torn last line is cut on resume; metrics.csv is rebuilt from it; an
  unreadable config.json is rewritten (the folder name is its hash) and an unreadable JSON result
  is moved aside and made again.

The loop that trains on a run (resume, logging, evaluation, checkpoints, NaN guard) is
`momawb.loop.train_loop`.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import math
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from momawb.safe_files import (RunFileRepaired, atomic_torch_save, atomic_write_bytes, fsync_file,
                               read_json_file, read_jsonl, repaired)

__all__ = [
    "pick_device", "seed_everything", "one_cpu_thread", "outputs_root", "config_hash", "atomic_write_bytes",
    "atomic_torch_save", "to_device", "read_metrics", "Run", "RunFileRepaired", "RunBusy",
]


class RunBusy(UserWarning):
    """Another process is training this run; this one waits for it (`Run.exclusive`)."""


def pick_device(prefer: str | None = None) -> torch.device:
    """The device of a run: ``prefer`` ('cpu', 'cuda', 'cuda:1') when given; for None/'auto',
    ``$MOMAWB_DEVICE`` when set (the test suite's device switch uses it), else CUDA when
    available, else CPU. Raises ValueError when CUDA is asked for and absent."""
    if prefer in (None, "", "auto"):
        prefer = os.environ.get("MOMAWB_DEVICE") or None
    if prefer not in (None, "", "auto"):
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={prefer!r} was asked for but CUDA is not available here; "
                             "use device='cpu' or 'auto'")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def one_cpu_thread():
    """CPU intra-op threads set to 1 inside (restored after; also a decorator). For loops of many
    tiny forward passes (lockstep evaluation and data collection, SB3's 64 x 64 learner), where a
    second thread only adds synchronisation: with another process on the other core it made each
    Ant evaluation pass 5x slower (0.55 ms per baddbmm) and the Ant learner 17x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, numpy's legacy RNG and torch (CPU and CUDA); return a fresh numpy Generator.

    Library code draws from the returned Generator, never from global ``np.random``.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))
    return np.random.default_rng(int(seed))


_CHECKOUT = Path(__file__).resolve().parent.parent


def outputs_root(root: str | os.PathLike | None = None) -> Path:
    """The outputs folder: ``root``, else ``$MOMAWB_OUTPUTS``, else the checkout's ``outputs/``
    (momawb installed from a clone, wherever a notebook's kernel starts), else ``./outputs``."""
    if root or os.environ.get("MOMAWB_OUTPUTS"):
        return Path(root or os.environ["MOMAWB_OUTPUTS"]).expanduser().resolve()
    if (_CHECKOUT / "pyproject.toml").exists() and (_CHECKOUT / "momawb").is_dir():
        return _CHECKOUT / "outputs"
    return Path("outputs").resolve()


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def config_hash(config: Any) -> str:
    """A short, stable hash of a config (dataclass or mapping); equal configs share run dirs."""
    blob = json.dumps(_jsonable(config), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _rng_states(np_rng: np.random.Generator) -> dict:
    """Every RNG a run draws from: Python, numpy (legacy and the run's Generator), torch's CPU
    generator and, when CUDA is initialised, each CUDA device's generator. torch's states are
    CPU byte tensors (CUDA ones too: ``get_rng_state_all`` returns them on the host)."""
    states = {"python": random.getstate(), "numpy_legacy": np.random.get_state(),
              "numpy": np_rng.bit_generator.state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _byte_state(t: torch.Tensor) -> torch.Tensor:
    """An RNG state as the CPU ByteTensor torch's setters need, whatever device it was mapped to."""
    return t.to("cpu", torch.uint8) if isinstance(t, torch.Tensor) else torch.as_tensor(t, dtype=torch.uint8)


def _set_rng_states(states: dict, np_rng: np.random.Generator) -> None:
    """Inverse of `_rng_states`. CUDA states are restored on the devices they were saved from
    (as many as this machine has); a checkpoint written without CUDA leaves CUDA's RNG as seeded."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy_legacy"])
    np_rng.bit_generator.state = states["numpy"]
    torch.set_rng_state(_byte_state(states["torch"]))
    if states.get("cuda") and torch.cuda.is_available():
        for i, s in enumerate(states["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(_byte_state(s), i)


def to_device(obj: Any, device: torch.device | str) -> Any:
    """``obj`` (nested dicts, lists, tuples of tensors and plain values) with every tensor on ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


class Run:
    """One training run's folder, RNGs, checkpoint and metric log.

    ``Run(name, config, seed=0)`` makes (or finds) ``<root>/runs/<name>-<hash(config, seed)>``.
    A folder that already holds a ``config.json`` for a different config is never reused.
    """

    CKPT = "checkpoint.pt"

    def __init__(self, name: str, config: Any = None, seed: int = 0,
                 root: str | os.PathLike | None = None, device: str | None = None):
        if not name or any(part in ("..", "") for part in Path(name).parts):
            raise ValueError(f"run name {name!r} must be a non-empty relative path without '..'")
        self.name, self.seed = name, int(seed)
        self.config = _jsonable(config) if config is not None else {}
        self.hash = config_hash({"config": self.config, "seed": self.seed})
        self.dir = outputs_root(root) / "runs" / f"{name}-{self.hash}"
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg_file = self.dir / "config.json"
        meta = {"name": name, "seed": self.seed, "config": self.config}
        old = read_json_file(cfg_file, expect=dict)
        if old is not None:
            if old.get("config") != meta["config"] or old.get("seed") != self.seed:
                raise FileExistsError(f"{self.dir} holds a run with another config; "
                                      "choose another run name or root")
        else:       # new, or unreadable and moved aside: the folder name is the hash of this config
            atomic_write_bytes(cfg_file, json.dumps(meta, indent=1, default=str).encode())
        self.device = pick_device(device)
        self.np_rng = seed_everything(self.seed)
        self._csv_keys: list[str] | None = None
        self._started, self._wall_before = time.time(), 0.0

    def wall_time(self) -> float:
        """Seconds spent on this run over all its sessions: this one since the Run was made (or,
        resumed, since its checkpoint was loaded) plus what that checkpoint recorded; a killed
        session counts up to its last checkpoint."""
        return self._wall_before + time.time() - self._started

    # ---------------------------------------------------------------- one trainer at a time
    @contextlib.contextmanager
    def exclusive(self):
        """Hold this run's lock (``train.lock``, an OS file lock released when the holder exits,
        however it exits) while training it. Two processes on one run (a rerun started while a
        killed sweep's workers still ran, two notebooks sharing runs) would append every metric
        row twice and overwrite each other's checkpoints; the second one waits instead, with a
        `RunBusy` warning naming the holder, then resumes from what the first one left (a
        finished run: nothing left to do). Not reentrant: one holder per process and run."""
        import fcntl
        with open(self.dir / "train.lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                warnings.warn(f"{self.dir} is being trained by another process ({holder}); waiting for it, "
                              "then resuming from its checkpoint", RunBusy, stacklevel=3)
                fcntl.flock(f, fcntl.LOCK_EX)
            except OSError as e:       # a file system without locks (some network mounts): train unguarded
                warnings.warn(f"{self.dir}: cannot lock train.lock ({e}); nothing stops a second process from "
                              "training this run at the same time", RunBusy, stacklevel=3)
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
            f.flush()
            try:
                yield self
            finally:
                f.truncate(0)                     # nobody holds it: an empty file
                with contextlib.suppress(OSError):
                    fcntl.flock(f, fcntl.LOCK_UN)

    # ---------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.dir / self.CKPT

    def save(self, state: Mapping[str, Any], step: int) -> Path:
        """Atomically write ``state`` plus every RNG state and ``step``.

        The metric rows logged so far are fsynced first, so a checkpoint never outlives them.
        `load` reads it back on the host and returns the state on ``self.device`` (nested dicts
        and lists of tensors are moved; modules and optimisers loading it keep their own devices)."""
        blob = {"state": dict(state), "step": int(step), "rng": _rng_states(self.np_rng),
                "wall_time": self.wall_time()}
        fsync_file(self.dir / "metrics.jsonl")
        atomic_torch_save(blob, self.checkpoint_path)
        return self.checkpoint_path

    def load(self) -> tuple[dict, int] | None:
        """Restore RNG states and return ``(state, step)`` from the checkpoint, or None.

        Repairs what a crash can leave (`RunFileRepaired` warnings): temporary files of
        interrupted atomic writes are removed, metric rows past the checkpoint and a torn last
        line are dropped, metrics.csv is rebuilt."""
        stale = sorted(p.name for p in self.dir.glob(".*.tmp") if p.is_file())
        for name in stale:
            (self.dir / name).unlink(missing_ok=True)
        if stale:
            repaired(f"{self.dir}: removed {len(stale)} temporary file(s) of writes a crash interrupted: "
                      f"{', '.join(stale)}")
        if not self.checkpoint_path.exists():
            if (self.dir / "metrics.jsonl").exists() or (self.dir / "metrics.csv").exists():
                self._truncate_log(0)  # rows of an attempt killed before its first checkpoint
            return None
        try:   # on the host: RNG states must stay CPU byte tensors whatever the run's device
            blob = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        except Exception as e:  # a corrupt checkpoint is reported, never silently replaced
            raise RuntimeError(f"checkpoint {self.checkpoint_path} cannot be read ({e}); move it "
                               "away to start this run again from scratch") from e
        _set_rng_states(blob["rng"], self.np_rng)
        self._started, self._wall_before = time.time(), float(blob.get("wall_time", 0.0))
        self._truncate_log(blob["step"])
        return to_device(blob["state"], self.device), blob["step"]

    # ---------------------------------------------------------------- metrics
    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append one row (``step`` + metrics) to metrics.jsonl and metrics.csv."""
        row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(_jsonable(row)) + "\n")
        path = self.dir / "metrics.csv"
        if self._csv_keys is None and path.exists():
            with open(path) as f:
                self._csv_keys = next(csv.reader(f), None)
        if self._csv_keys is None or set(row) - set(self._csv_keys):
            self._rewrite_csv(extra=row)
            return
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, self._csv_keys, restval="").writerow(row)

    def metrics(self) -> list[dict]:
        """All logged rows, in order (lines that do not parse are skipped with a warning)."""
        return read_metrics(self.dir)

    def _rewrite_csv(self, extra: dict | None = None, rows: list[dict] | None = None) -> None:
        rows = self.metrics() if rows is None else rows
        if extra is not None and (not rows or rows[-1] != _jsonable(extra)):
            rows.append(extra)
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        self._csv_keys = keys
        buf = _CsvBuffer()
        w = csv.DictWriter(buf, keys, restval="")
        w.writeheader()
        w.writerows(rows)
        atomic_write_bytes(self.dir / "metrics.csv", buf.getvalue().encode())

    def _truncate_log(self, step: int) -> None:
        """Keep the rows up to ``step`` (the checkpoint's); drop torn lines; rebuild metrics.csv."""
        path = self.dir / "metrics.jsonl"
        rows, bad = read_jsonl(path)
        if bad:
            repaired(f"{path}: dropped line(s) {bad} that do not parse (torn by a crash mid-write)")
        rows = [r for r in rows if r["step"] <= step]
        atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())
        self._rewrite_csv(rows=rows)

    # ---------------------------------------------------------------- results
    def write_json(self, filename: str, obj: Any) -> Path:
        path = self.dir / filename
        atomic_write_bytes(path, json.dumps(_jsonable(obj), indent=1, default=str).encode())
        return path

    def read_json(self, filename: str) -> Any | None:
        """The JSON file ``filename`` of the run, or None when it is absent or unreadable (then it
        is moved aside to ``<filename>.unreadable`` with a warning, so the caller makes it again)."""
        return read_json_file(self.dir / filename)


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The metric rows of a run folder (``metrics.jsonl``), in order; lines that do not parse
    are skipped with a `RunFileRepaired` warning (resuming the run repairs the file)."""
    path = Path(run_dir) / "metrics.jsonl"
    rows, bad = read_jsonl(path)
    if bad:
        warnings.warn(f"{path}: line(s) {bad} are not metric rows (a crash mid-write?) and were skipped; "
                      "resuming the run repairs the file", RunFileRepaired, stacklevel=2)
    return rows


class _CsvBuffer(list):
    def write(self, s: str) -> None:
        self.append(s)

    def getvalue(self) -> str:
        return "".join(self)
