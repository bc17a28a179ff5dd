"""A notebook's ``results.json``: the rows of every finished run, merged by run.

`write_results` merges rows into the file (a re-run replaces its own rows and keeps the others),
`read_results` reads it back (optionally only some runs' rows), and `run_key` is the identity a
row is merged by: its run folder below ``runs/``. `scored` and `diverged` split rows by whether
their training diverged (jobs with ``on_diverge="record"``). A light module: a notebook's set-up
imports it before any training module.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["run_key", "write_results", "read_results", "scored", "diverged"]


def run_key(row: dict) -> str:
    """A result row's identity: its run folder below ``runs/`` (domain-task / dataset tag /
    method-hash(config, seed)), the same wherever the outputs root lives."""
    rd = str(row.get("run_dir", ""))
    return rd.split("/runs/", 1)[-1] if rd else json.dumps([row.get(k) for k in ("method", "dataset", "task", "seed")])


def write_results(path: str | Path, rows: Sequence[dict], **meta: Any) -> Path:
    """Merge ``rows`` into ``results.json`` by run (`run_key`): a row of the same run replaces
    the stored one, rows of other finished runs are kept, so a subset run (one method, one
    seed) never loses what earlier runs produced. Each row: method, dataset, task, seed, score,
    curve, config, wall time. The file also holds library versions and ``meta``; writes are
    atomic and serialised by a lock file beside it (two notebooks may finish at once)."""
    import fcntl     # POSIX only: imported here so that reading results works everywhere
    from momawb.datasets import library_versions
    from momawb.safe_files import atomic_write_bytes
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = []
        if path.exists():
            try:
                old = read_results(path)["rows"]
            except ValueError as e:  # keep the unreadable file for inspection, never overwrite it
                keep = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
                path.rename(keep)
                warnings.warn(f"{e}; moved to {keep}, writing a new {path.name}")
        merged = {run_key(r): r for r in old}
        merged.update({run_key(r): dict(r) for r in rows})
        blob = {"rows": list(merged.values()), "versions": library_versions(), **meta,
                "written": time.strftime("%Y-%m-%dT%H:%M:%S"), "last_grid": [run_key(r) for r in rows]}
        atomic_write_bytes(path, json.dumps(blob, indent=1, default=str).encode())
    return path


def read_results(path: str | Path, rows_of: Sequence[dict] | None = None) -> dict:
    """The blob of ``results.json``; with ``rows_of`` (rows or jobs' rows), only those runs.

    Raises ValueError naming the file when it is not a results file (torn or foreign)."""
    path = Path(path)
    try:
        blob = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); move it away, the next run writes a new one "
                         "from the finished runs") from e
    if not isinstance(blob, dict) or not isinstance(blob.get("rows"), list):
        raise ValueError(f"{path} is not a momawb results file (no 'rows' list)")
    if rows_of is not None:
        keys = {run_key(r) for r in rows_of}
        blob = {**blob, "rows": [r for r in blob["rows"] if run_key(r) in keys]}
    return blob


def scored(rows: Iterable[dict]) -> list[dict]:
    """The rows with a score: all but those of trainings that diverged (``on_diverge="record"``)."""
    return [r for r in rows if not r.get("diverged")]


def diverged(rows: Iterable[dict]) -> dict[tuple[str, str], list[int]]:
    """(variant, or method for rows without one; task) -> the seeds whose training diverged."""
    out: dict = {}
    for r in rows:
        if r.get("diverged"):
            out.setdefault((r.get("variant") or r["method"], r["task"]), []).append(int(r["seed"]))
    return out
