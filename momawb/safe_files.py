"""Crash-safe files: atomic writes (temporary file, fsync, rename, fsync of the folder), and the
readers that find what a crash left behind (torn JSON lines, unreadable JSON files).

A file written by `atomic_write_bytes` / `atomic_torch_save` is, after a crash at any byte, either
the old file or the new one, never half of one (at worst a ``.<name>.*.tmp`` is left beside it).
`momawb.runs.Run` uses these for every file of a run and repairs the rest on resume.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["publish", "atomic_write_bytes", "atomic_torch_save", "fsync_file", "RunFileRepaired", "repaired",
           "move_aside", "read_jsonl", "read_json_file"]


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every platform opens folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(tmp: str, path: Path) -> None:
    """Give a temporary file ordinary permissions (mkstemp makes it owner-only) and rename it."""
    os.chmod(tmp, _umask_mode())
    os.replace(tmp, path)
    _fsync_dir(Path(path).parent)


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """``write(file)`` into a temporary file in ``path``'s folder, fsync, rename over ``path``: a
    crash at any byte leaves the old file or the new one (and at worst a ``.<name>.*.tmp``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    _atomic_write(path, lambda f: f.write(data))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` that never leaves a half-written file behind."""
    _atomic_write(path, lambda f: torch.save(obj, f))


def fsync_file(path: Path) -> None:
    if path.exists():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class RunFileRepaired(UserWarning):
    """A file of a run was found damaged (a crash mid-write) and repaired; the message names it."""


def repaired(msg: str) -> None:
    warnings.warn(msg, RunFileRepaired, stacklevel=4)


def move_aside(path: Path) -> Path:
    """Rename an unreadable file to ``<name>.unreadable[-k]`` (kept for inspection, never deleted)."""
    for k in range(1000):
        dest = path.with_name(f"{path.name}.unreadable" + (f"-{k}" if k else ""))
        if not dest.exists():
            os.replace(path, dest)
            return dest
    raise FileExistsError(f"too many unreadable copies of {path}; clean up {path.parent}")


def read_jsonl(path: Path) -> tuple[list[dict], list[int]]:
    """The rows of a JSON-lines file and the (1-based) numbers of the lines that do not parse."""
    rows, bad = [], []
    data = path.read_bytes() if path.exists() else b""
    for i, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not a metrics row")
            rows.append(row)
        except ValueError:        # JSONDecodeError and UnicodeDecodeError are ValueErrors
            bad.append(i)
    return rows, bad


def read_json_file(path: Path, expect: type | None = None) -> Any | None:
    """The JSON in ``path``; None when absent, or when unreadable (then moved aside with a
    `RunFileRepaired` warning so that the caller makes it again)."""
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_bytes())
        if expect is not None and not isinstance(obj, expect):
            raise ValueError(f"expected a JSON {expect.__name__}")
        return obj
    except ValueError as e:
        dest = move_aside(path)
        repaired(f"{path} could not be read ({e}); moved aside to {dest.name}, it will be written again")
        return None
