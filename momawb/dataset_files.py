"""Reading datasets written by other tools: D4RL-layout HDF5 files (Minari: `momawb.minari_reader`).

`momawb.datasets.Dataset.load` / `load_minari` call `read_d4rl` / `minari_reader.read_minari`, which return the
arrays of a `Dataset` (plus ``meta`` and ``source``); every array goes through the checks below,
which `Dataset` also applies to in-memory arrays. A foreign file gets the right value or a
`DatasetError` naming the file, the key, its shape or dtype and what to do; never a bare numpy
or h5py exception.

Episode ends (``terminals | timeouts``) are found, never guessed:

* the file's ``timeouts``; else an ``episode_length`` (argument, or an ``episode_length`` /
  ``max_episode_steps`` attribute): D4RL's ``qlearning_dataset`` rule, an episode ends after a
  terminal or after that many steps; else the rows where ``next_observations[t] !=
  observations[t+1]``; else a `DatasetError` asking for ``episode_length``;
* with ``next_observations``, every such discontinuity is an episode end, flagged or not.

Rows without a real next state (files without ``next_observations``: the last step of every
episode cut by a timeout or by the end of the data) are dropped, as D4RL's ``qlearning_dataset``
does; the row before becomes the episode's timeout, so histories and episode structure stay
right. A terminal row keeps its reward and terminal flag (its s' is absorbing: TD targets do not
read it) with ``next_observed`` False and a placeholder s' = s, which the world model's state
target skips. The counts go into ``meta`` and a `DatasetWarning`.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = ["DatasetError", "DatasetWarning", "read_d4rl", "check_table", "check_team",
           "check_flags", "check_finite", "check_numeric", "MARK"]

MARK = "momawb"          # ``created_by`` attribute of the files momawb writes
REQUIRED = ("observations", "actions", "rewards", "terminals")
OPTIONAL = ("next_observations", "timeouts", "infos/qpos", "infos/qvel", "infos/next_observed")
LENGTH_ATTRS = ("episode_length", "max_episode_steps")
_FILE_KEY = {"qpos": "infos/qpos", "qvel": "infos/qvel", "next_observed": "infos/next_observed"}


class DatasetError(ValueError):
    """A dataset file or array is missing, unreadable or inconsistent."""


class DatasetWarning(UserWarning):
    """A dataset was read with a change worth knowing (rows dropped, episode ends added)."""


# ----------------------------------------------------------------------------- array checks
_KINDS = {"S": "byte strings", "U": "text", "O": "Python objects (e.g. variable-length strings)",
          "V": "records (compound or opaque)", "c": "complex numbers", "M": "dates", "m": "time deltas"}


def check_numeric(source: str, key: str, arr: Any) -> np.ndarray:
    try:
        arr = np.asarray(arr)
    except Exception as e:   # ragged lists and the like
        raise DatasetError(f"{source}: key {key!r} is not an array ({type(e).__name__}: {e})") from e
    if arr.dtype.kind not in "biuf":
        raise DatasetError(f"{source}: key {key!r} holds {_KINDS.get(arr.dtype.kind, arr.dtype.kind)} "
                           f"(dtype {arr.dtype}, shape {arr.shape}); momawb needs numbers (float, int or "
                           "bool): convert that key to a numeric array and save the file again")
    return arr


def check_table(source: str, key: str, arr: Any, width: str, dtype=np.float32) -> np.ndarray:
    """A numeric (N, D) array of ``dtype``; (N,) is read as (N, 1). ``width`` names D in messages."""
    arr = check_numeric(source, key, arr)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DatasetError(f"{source}: key {key!r} has shape {arr.shape}; momawb needs (N, {width}), one "
                           "flat row per transition (flatten image or nested observations first)")
    return arr.astype(dtype, copy=False)


def check_team(source: str, key: str, arr: Any) -> np.ndarray:
    """The (N,) team array of a cooperative task; (N, 1) is squeezed, (N, k) per-agent arrays refused."""
    arr = check_numeric(source, key, arr)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        how = {"rewards": "e.g. rewards.sum(1) or rewards.mean(1), whichever is the task's team reward",
               "terminals": "e.g. terminals.any(1) if the episode ends when one agent's does, .all(1) if "
                            "when all agents' do"}.get(key, f"e.g. {key}.any(1) if the episode is cut when "
                                                          "one agent's is")
        raise DatasetError(f"{source}: key {key!r} has shape {arr.shape}: one column per agent. momawb's "
                           f"tasks are cooperative (PAPER.md section 3) and need the (N,) team array "
                           f"({arr.shape[0]},): reduce it ({how}) and save the file again")
    if arr.ndim != 1:
        raise DatasetError(f"{source}: key {key!r} has shape {arr.shape}; momawb needs an (N,) array")
    return arr


def check_finite(source: str, key: str, arr: np.ndarray) -> None:
    """A float array without NaN or inf, else a DatasetError naming the first bad row."""
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(1)
        if bad.any():
            raise DatasetError(f"{source}: key {key!r} holds NaN or inf at row {int(np.argmax(bad))} "
                               f"({int(bad.sum())} rows in all); clean or regenerate the dataset")


def check_flags(source: str, key: str, arr: Any) -> np.ndarray:
    """An (N,) bool array from bool, 0/1 ints or 0./1. floats; any other value is refused."""
    arr = check_team(source, key, arr)
    if arr.dtype.kind != "b":
        bad = ~np.isin(arr, (0, 1))
        if bad.any():
            i = int(np.argmax(bad))
            raise DatasetError(f"{source}: key {key!r} must hold 0/1 or True/False, but row {i} holds "
                               f"{arr[i].item()!r} ({int(bad.sum())} rows in all)")
    return arr.astype(bool)


# ----------------------------------------------------------------------------- D4RL HDF5
def _plain(v: Any, json_strings: bool) -> Any:
    """An attribute value as plain JSON-able Python (momawb's own attributes are JSON strings)."""
    if isinstance(v, h5py.Empty):
        return None
    if isinstance(v, bytes):
        v = v.decode("utf-8", errors="replace")
    if isinstance(v, str):
        if json_strings:
            try:
                return json.loads(v)
            except ValueError:
                return v
        return v
    if isinstance(v, np.ndarray):
        return [_plain(x, False) for x in v.tolist()] if v.dtype.kind in "OSUV" else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v if isinstance(v, (int, float, bool, list, dict)) or v is None else str(v)


def _get(f: h5py.File, path: Path, key: str) -> np.ndarray:
    """Dataset ``key`` of ``f`` read whole; a group, an odd object or a read error is a DatasetError."""
    try:
        obj = f[key]
        if isinstance(obj, h5py.Group):
            raise DatasetError(f"{path}: key {key!r} is a group holding {sorted(obj.keys())}, not an array; "
                               "momawb reads one flat array per key (D4RL's layout): concatenate its "
                               "parts into one array and save the file again")
        if not isinstance(obj, h5py.Dataset):
            raise DatasetError(f"{path}: key {key!r} is a {type(obj).__name__}, not an array")
        return obj[()]
    except DatasetError:
        raise
    except Exception as e:
        raise DatasetError(f"{path}: key {key!r} cannot be read ({type(e).__name__}: {e}); the file may "
                           "be truncated or corrupt: download or generate it again") from e


def _has(f: h5py.File, path: Path, key: str) -> bool:
    try:
        return key in f
    except Exception as e:
        raise DatasetError(f"{path}: cannot look up key {key!r} ({type(e).__name__}: {e}); the file "
                           "may be truncated or corrupt") from e


def _extras(f: h5py.File, used: set[str]) -> tuple[dict, list[str]]:
    """Small keys written by other tools (``metadata/algorithm``, ...) as values, the rest by name."""
    names: list[tuple[str, Any]] = []
    try:
        f.visititems(lambda name, obj: names.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
    except Exception as e:
        return {}, [f"(listing the file's keys failed: {type(e).__name__}: {e})"]
    values, ignored = {}, []
    for name, obj in names:
        if name in used:
            continue
        try:
            if obj.size <= 1 or obj.dtype.kind in "OSU" and obj.size <= 16:
                values[name] = _plain(obj[()], False)
                continue
            ignored.append(f"{name} {obj.shape}")
        except Exception as e:
            ignored.append(f"{name} (unreadable: {type(e).__name__})")
    return values, ignored


def _attributes(f: h5py.File) -> dict:
    """The file's attributes as plain values (JSON-decoded in momawb's own files)."""
    ours = False
    meta, unreadable = {}, []
    try:
        keys = list(f.attrs.keys())
    except Exception as e:
        return {"unreadable_attributes": [f"(listing failed: {type(e).__name__}: {e})"]}
    try:
        ours = _plain(f.attrs.get("created_by"), False) == MARK
    except Exception:
        pass
    for k in keys:
        try:
            v = _plain(f.attrs[k], ours)
        except Exception as e:
            unreadable.append(f"{k} ({type(e).__name__}: {e})")
            continue
        if k == "created_by":                 # momawb's mark; another tool's is kept under another name
            if not ours:
                meta["file_created_by"] = v
            continue
        meta[k] = v
    if unreadable:
        meta["unreadable_attributes"] = unreadable
    return meta


def read_d4rl(path: str | os.PathLike, episode_length: int | None = None,
              fallback_episode_length: int | None = None) -> dict[str, Any]:
    """The arrays of a D4RL-layout HDF5 file (see `momawb.datasets`) as keyword arguments of
    `Dataset`. ``episode_length`` is used only when the file has no ``timeouts`` key (module
    docstring); ``fallback_episode_length`` (a domain's known episode length, as D4RL's own
    loader takes the env's max_episode_steps) only when nothing else tells the episode ends.
    Raises FileNotFoundError, DatasetError."""
    path = Path(path)
    integer = isinstance(episode_length, (int, np.integer)) and not isinstance(episode_length, bool)
    if episode_length is not None and (not integer or episode_length < 1):
        raise ValueError(f"episode_length must be a positive integer (steps per episode), got {episode_length!r}")
    if not path.exists():
        raise FileNotFoundError(f"dataset file {path} does not exist; generate it with momawb.generate or "
                                "pass the path of a D4RL/Minari dataset")
    try:
        f = h5py.File(path, "r")
    except Exception as e:
        raise DatasetError(f"{path} is not a readable HDF5 file (truncated or corrupt?): {e}") from e
    with f:
        if not _has(f, path, "observations"):
            try:
                episodes = [k for k in f.keys() if k.startswith("episode_")]
            except Exception:
                episodes = []
            if episodes:
                raise DatasetError(f"{path} holds Minari episode groups ({episodes[0]}, ...), not D4RL's "
                                   "flat keys: pass the Minari dataset folder (the one holding data/) to "
                                   "Dataset.load or Dataset.load_minari")
        missing = [k for k in REQUIRED if not _has(f, path, k)]
        if missing:
            raise DatasetError(f"{path}: missing key(s) {missing}; a D4RL-layout file needs {list(REQUIRED)} "
                               "(+ next_observations, timeouts)")
        raw = {k: _get(f, path, k) for k in REQUIRED + OPTIONAL if k in REQUIRED or _has(f, path, k)}
        meta = _attributes(f)
        extra, ignored = _extras(f, set(raw))
    if extra:
        meta["file_keys"] = extra
    if ignored:
        meta["ignored_keys"] = ignored
    src = str(path)
    obs = check_table(src, "observations", raw["observations"], "state_dim")
    n = len(obs)
    if n == 0:
        raise DatasetError(f"{src}: the dataset is empty (key 'observations' has 0 rows)")
    a = {"observations": obs, "actions": check_table(src, "actions", raw["actions"], "joint action width"),
         "rewards": check_team(src, "rewards", raw["rewards"]),
         "terminals": check_flags(src, "terminals", raw["terminals"])}
    if "next_observations" in raw:
        a["next_observations"] = check_table(src, "next_observations", raw["next_observations"], "state_dim")
    if "timeouts" in raw:
        a["timeouts"] = check_flags(src, "timeouts", raw["timeouts"])
    for key in ("qpos", "qvel"):
        if f"infos/{key}" in raw:
            a[key] = check_table(src, f"infos/{key}", raw[f"infos/{key}"], {"qpos": "nq", "qvel": "nv"}[key],
                                 np.float64)           # simulator state: full precision for restarts
    if "infos/next_observed" in raw:
        a["next_observed"] = check_flags(src, "infos/next_observed", raw["infos/next_observed"])
    for key, arr in a.items():
        if len(arr) != n:
            raise DatasetError(f"{src}: key {_FILE_KEY.get(key, key)!r} has "
                               f"{len(arr)} rows but 'observations' has {n}; the file is inconsistent")
        check_finite(src, _FILE_KEY.get(key, key), arr)
    if "next_observations" in a and a["next_observations"].shape != obs.shape:
        raise DatasetError(f"{src}: key 'next_observations' has shape {a['next_observations'].shape}, "
                           f"expected {obs.shape} (the shape of 'observations')")
    _episode_ends(a, meta, src, episode_length, fallback_episode_length)
    if "next_observations" not in a:
        _derive_next(a, meta, src)
    return {**a, "meta": meta, "source": src}


def _warn(msg: str) -> None:
    warnings.warn(msg, DatasetWarning, stacklevel=5)   # the caller of Dataset.load


def _episode_ends(a: dict, meta: dict, src: str, episode_length: int | None,
                  fallback: int | None = None) -> None:
    """Sets ``a['timeouts']`` when the file has none; adds ends at next-state discontinuities."""
    n, term = len(a["observations"]), a["terminals"]
    jump = None
    if "next_observations" in a:      # s'_t != s_{t+1}: t ends an episode (terminal, timeout or unflagged)
        jump = np.zeros(n, bool)
        jump[:-1] = (a["next_observations"][:-1] != a["observations"][1:]).any(1)
    if "timeouts" not in a:
        length, origin = episode_length, "the episode_length argument"
        if length is None:
            for k in LENGTH_ATTRS:
                v = meta.get(k)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1 and v == int(v):
                    length, origin = int(v), f"the file's {k!r} attribute"
                    break
        # without a length, do the next states show the ends? (one pass over the arrays, when needed)
        moves = length is None and jump is not None and bool((a["next_observations"] != a["observations"]).any())
        if length is None and fallback is not None and not moves:
            length, origin = int(fallback), "the task's episode length"
        if length is not None:
            # D4RL's qlearning_dataset without timeouts: an episode is cut after `length` steps; the
            # step count restarts after every terminal and every cut (vectorised: position since
            # the last terminal, modulo `length`).
            after = np.zeros(n, np.int64)
            after[1:] = np.where(term[:-1], np.arange(1, n), 0)
            pos = np.arange(n) - np.maximum.accumulate(after)
            ends = ((pos + 1) % length == 0) & ~term
            a["timeouts"] = ends
            meta["episode_ends_from"] = f"episode_length={length} ({origin})"
        elif moves:
            a["timeouts"] = jump & ~term
            meta["episode_ends_from"] = "next_observations (rows where next_observations[t] != observations[t+1])"
        else:
            why = ("no next_observations" if jump is None else
                   "next_observations equal observations everywhere, so they show no episode boundary")
            raise DatasetError(f"{src}: no 'timeouts' key and {why}: the episode ends other than terminals "
                               f"({int(term.sum())} rows) are unknown, and merging episodes would make "
                               "next states and histories cross resets. Pass the task's episode length: "
                               "Dataset.load(path, episode_length=T) (the env's max_episode_steps; an "
                               "episode then ends after a terminal or after T steps), or write a 'timeouts' "
                               "key or an 'episode_length' attribute into the file")
        _warn(f"{src}: no 'timeouts' key; episode ends taken from {meta['episode_ends_from']}: "
              f"{int(a['timeouts'].sum())} timeouts, {int(term.sum())} terminals")
    elif jump is not None:
        extra = jump & ~term & ~a["timeouts"]
        if extra.any():
            a["timeouts"] = a["timeouts"] | extra
            meta["episode_ends_added"] = int(extra.sum())
            _warn(f"{src}: {int(extra.sum())} rows (first: {int(np.argmax(extra))}) have next_observations[t] != "
                  "observations[t+1] without a terminal or timeout flag; they are taken as episode ends "
                  "(timeouts) so that histories do not cross them")


def _derive_next(a: dict, meta: dict, src: str) -> None:
    """s'_t = s_{t+1} inside episodes; rows whose s' is not in the file are dropped (timeouts) or
    kept with ``next_observed`` False (terminals: absorbing s'), see the module docstring."""
    obs, term = a["observations"], a["terminals"]
    n = len(obs)
    ends = term | a["timeouts"]
    ends[-1] = True
    nxt = np.empty_like(obs)
    nxt[:-1] = obs[1:]
    nxt[ends] = obs[ends]                                  # placeholder, never a target (see above)
    drop = ends & ~term                                    # timeout or end of data: s' unknown
    prev = np.flatnonzero(drop) - 1
    prev = prev[(prev >= 0) & ~ends[np.maximum(prev, 0)]]  # the row before, in the same episode
    timeouts = a["timeouts"].copy()
    timeouts[prev] = True
    keep = ~drop
    a.update(next_observations=nxt, timeouts=timeouts, next_observed=~ends)
    for k in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations",
              "next_observed", "qpos", "qvel"):
        if k in a:
            a[k] = a[k][keep]
    dropped, placeholders = int(drop.sum()), int((ends & term).sum())
    meta.update(next_observations_derived=True, rows_dropped_without_next_state=dropped,
                terminal_rows_without_next_state=placeholders)
    if not keep.any():
        raise DatasetError(f"{src}: no 'next_observations' key and every episode is one step long, so no "
                           "transition has a known next state; write next_observations into the file")
    _warn(f"{src}: no 'next_observations' key; s' taken from the next row inside each episode. "
          f"{dropped} of {n} rows (the last step of each episode cut by a timeout or by the end of the data) "
          f"have no real next state and were dropped (D4RL's qlearning_dataset does the same); "
          f"{placeholders} terminal rows keep their reward and terminal flag, their state target is skipped")
