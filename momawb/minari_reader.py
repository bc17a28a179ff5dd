"""Reading Minari datasets through the ``minari`` package (any storage format it reads).

`momawb.datasets.Dataset.load_minari` calls `read_minari`, which returns the arrays of a
`Dataset`. Each episode's T+1 observations give T transitions with real next states; the last
step is terminal if ``terminations[-1]``, else a timeout (the data ends there). Empty episodes are
skipped and counted. Dict observation spaces are flattened only on request (``observation_keys``:
the parts concatenated, in that order); Tuple, image and text spaces are refused with a
`DatasetError` naming the episode and the keys. Errors of the ``minari`` reader itself are
reported with the episode and what its HDF5 group holds.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from momawb.dataset_files import DatasetError, check_finite, check_flags, check_table, check_team

__all__ = ["read_minari", "minari_data_path"]


def minari_data_path(folder: str | os.PathLike) -> Path:
    """The ``data`` folder of a Minari dataset: ``folder/data``, ``folder`` itself, or a dataset id
    (``mujoco/ant/expert-v0``) under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``)."""
    p = Path(folder).expanduser()
    for c in (p / "data", p):
        if (c / "metadata.json").is_file():
            return c
    if p.exists():
        raise DatasetError(f"{p} is not a Minari dataset: neither {p / 'data' / 'metadata.json'} nor "
                           f"{p / 'metadata.json'} exists (a Minari dataset folder holds data/metadata.json "
                           "and data/main_data.hdf5)")
    if not p.is_absolute() and re.fullmatch(r"[\w.-]+(/[\w.-]+)*", str(folder)):
        root = Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")
        c = root / p / "data"
        if (c / "metadata.json").is_file():
            return c
        raise FileNotFoundError(f"{p} is neither a folder nor a local Minari dataset id ({c} does not exist); "
                                f"download it first (minari download {folder}) or pass its folder")
    raise FileNotFoundError(f"Minari dataset folder {p} does not exist")


def _episode_problem(data_path: Path, idx: int) -> str:
    """What is off in episode ``idx`` of an HDF5 Minari file, for error messages."""
    try:
        with h5py.File(data_path / "main_data.hdf5", "r") as f:
            name = f"episode_{idx}"
            if name not in f:
                return f"the file has no group {name!r}"
            g = f[name]
            kinds = {k: ("group " + str(sorted(g[k].keys())) if isinstance(g[k], h5py.Group)
                         else f"array {g[k].shape} {g[k].dtype}") for k in g.keys()}
            missing = [k for k in ("observations", "actions", "rewards", "terminations", "truncations")
                       if k not in g]
            return (f"missing key(s) {missing}; " if missing else "") + f"it holds {kinds}"
    except Exception as e:
        return f"it cannot be inspected ({type(e).__name__}: {e})"


def _flat_obs(where: str, obs: Any, keys: list[str] | None) -> np.ndarray:
    if isinstance(obs, dict):
        parts = {k: np.shape(v) for k, v in obs.items()}
        if keys is None:
            raise DatasetError(f"{where}: 'observations' is a Dict space with keys {parts}; momawb needs one "
                               "flat state per step: pass observation_keys=[...] (e.g. "
                               f"{sorted(parts)!r}) to concatenate those parts, in that order, into the state")
        missing = [k for k in keys if k not in obs]
        if missing:
            raise DatasetError(f"{where}: observation_keys {missing} are not in the Dict observations {parts}")
        cols = [check_table(where, f"observations/{k}", obs[k], "d") for k in keys]
        if len({len(c) for c in cols}) > 1:
            raise DatasetError(f"{where}: the Dict observations {parts} have different lengths")
        return np.concatenate(cols, 1)
    if isinstance(obs, (tuple, list)):
        raise DatasetError(f"{where}: 'observations' is a Tuple space of {len(obs)} parts; momawb reads flat "
                           "Box observations or Dict spaces (observation_keys=...)")
    if keys is not None:
        raise DatasetError(f"{where}: observation_keys={keys!r} was given but 'observations' is a flat array "
                           f"{np.shape(obs)}; leave observation_keys out")
    return check_table(where, "observations", obs, "state_dim")


def read_minari(folder: str | os.PathLike, observation_keys: list[str] | None = None) -> dict[str, Any]:
    """The arrays of the Minari dataset ``folder`` (see `minari_data_path`) as keyword arguments
    of `Dataset` (module docstring). Raises FileNotFoundError, DatasetError."""
    data_path = minari_data_path(folder)
    keys = None if observation_keys is None else [observation_keys] if isinstance(observation_keys, str) \
        else list(observation_keys)
    try:
        import minari
    except ImportError as e:
        raise DatasetError(f"reading the Minari dataset {data_path} needs the minari package: "
                           "pip install 'minari[hdf5]'") from e
    try:
        raw_meta = json.loads((data_path / "metadata.json").read_text())
        mds = minari.MinariDataset(data_path)
        indices = [int(i) for i in mds.episode_indices]
    except Exception as e:
        raise DatasetError(f"{data_path}: minari cannot open this dataset ({type(e).__name__}: {e}); check "
                           "data/metadata.json (observation_space, action_space, dataset_id, minari_version) "
                           "and data/main_data.hdf5, or download the dataset again") from e
    if not indices:
        raise DatasetError(f"{data_path}: the Minari dataset has no episodes")
    cols: dict[str, list] = {k: [] for k in ("observations", "next_observations", "actions", "rewards",
                                             "terminals", "timeouts", "qpos", "qvel")}
    episodes = mds.iterate_episodes(indices)
    empty = 0
    for idx in indices:
        where = f"{data_path} episode {idx}"
        try:
            ep = next(episodes)
        except Exception as e:
            raise DatasetError(f"{where}: minari cannot read it ({type(e).__name__}: {e}); "
                               f"{_episode_problem(data_path, idx)}") from e
        obs = _flat_obs(where, ep.observations, keys)
        act = ep.actions
        if isinstance(act, (dict, tuple, list)):
            raise DatasetError(f"{where}: 'actions' is a {type(act).__name__} space; momawb needs one flat "
                               "joint action per step")
        act = check_table(where, "actions", act, "joint action width")
        rew = check_team(where, "rewards", ep.rewards)
        term = check_flags(where, "terminations", ep.terminations)
        trunc = check_flags(where, "truncations", ep.truncations)
        T = len(rew)
        rows = {"observations": len(obs), "actions": len(act), "rewards": T, "terminations": len(term),
                "truncations": len(trunc)}
        if rows != {**dict.fromkeys(rows, T), "observations": T + 1} and not (T == 0 and max(rows.values()) <= 1):
            raise DatasetError(f"{where}: the keys' lengths do not match ({rows}); a Minari episode holds "
                               "T+1 observations and T of everything else")
        if T == 0:
            empty += 1
            continue
        for key, arr in (("observations", obs), ("actions", act), ("rewards", rew)):
            check_finite(where, key, arr)
        trunc = trunc.copy()
        trunc[-1] = not term[-1]              # the data ends here: a cut, unless it terminated
        for key, arr in (("observations", obs), ("actions", act)):
            first = next((c[0] for c in (cols[key],) if c), None)
            if first is not None and arr.shape[1] != first.shape[1]:
                raise DatasetError(f"{where}: key {key!r} has width {arr.shape[1]} but earlier episodes have "
                                   f"{first.shape[1]}; every episode needs the same {key} space")
        cols["observations"].append(obs[:-1])
        cols["next_observations"].append(obs[1:])
        cols["actions"].append(act)
        cols["rewards"].append(rew)
        cols["terminals"].append(term)
        cols["timeouts"].append(trunc)
        infos = ep.infos if isinstance(ep.infos, dict) else {}
        for k in ("qpos", "qvel"):            # simulator state at s_t when the infos hold all T+1 of them
            v = infos.get(k)
            ok = isinstance(v, np.ndarray) and v.dtype.kind in "biuf" and v.ndim == 2 and len(v) == T + 1
            cols[k].append(v[:-1].astype(np.float64) if ok else None)
    if empty == len(indices):
        raise DatasetError(f"{data_path}: every episode of the Minari dataset is empty")
    out: dict[str, Any] = {}
    for k, parts in cols.items():
        if k in ("qpos", "qvel"):
            if parts and all(p is not None for p in parts) and len({p.shape[1] for p in parts}) == 1:
                out[k] = np.concatenate(parts)
            continue
        out[k] = np.concatenate(parts)
    meta = {"source_format": "minari", "minari": raw_meta}
    if keys is not None:
        meta["observation_keys"] = keys
    if empty:
        meta["empty_episodes_skipped"] = empty
    return {**out, "meta": meta, "source": str(data_path)}
