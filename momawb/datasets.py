"""The offline dataset: container, D4RL-layout HDF5, per-agent views and 10-step histories.

Layout on disk (D4RL's keys, read with h5py; the ``d4rl`` package is not needed):

===================  ===========  ==========================================================
key                  shape        meaning
===================  ===========  ==========================================================
observations         (N, S)       global state s_t (the single-agent observation)
actions              (N, A)       joint action a_t (agent-major; discrete: action indices)
rewards              (N,)         team reward r(s_t, a_t)
next_observations    (N, S)       s_{t+1}
terminals            (N,)         s_{t+1} is absorbing (``terminal``, PAPER.md section 3)
timeouts             (N,)         the episode was cut after this step (``timeout``)
infos/qpos, qvel     (N, nq/nv)   optional simulator state at s_t (ground-truth restarts)
infos/next_observed  (N,)         optional; False where s_{t+1} is not known (see below)
===================  ===========  ==========================================================

Metadata (domain, task, generator, seed, library versions, reference returns, ...) lives in
the file's attributes. Files momawb writes carry ``created_by = "momawb"``; it never
overwrites a file without that mark. Files of other tools (D4RL, Minari) are read by
`momawb.dataset_files`, which says how episode ends are found and what happens to rows without a
real next state (dropped; terminal ones kept with ``next_observed`` False: the absorbing s' is
never a target of the world model, and TD targets multiply it by 1 - terminal = 0).

Histories (PAPER.md section 4): agent i's history at step t is its last ``L = 10``
(observation, action) pairs *before* t, zero-padded and cut at the episode start. They are
never materialised for the whole dataset: `history_index` gives an (N, L) array of transition
indices (-1 = padding) and `AgentViews.history` gathers a batch through it.
"""
from __future__ import annotations

import functools
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from momawb.dataset_files import (MARK, DatasetError, DatasetWarning, check_finite, check_flags, check_table,
                                  check_team, read_d4rl)
from momawb.minari_reader import read_minari
from momawb.safe_files import publish

__all__ = ["DatasetError", "DatasetWarning", "Dataset", "AgentViews", "history_index", "library_versions"]


def library_versions() -> dict:
    """Installed versions of momawb and the libraries its numbers depend on (recorded in every
    dataset, result and results.json). Read once per process (about 13 ms a read)."""
    return dict(_library_versions())


@functools.lru_cache(maxsize=1)
def _library_versions() -> dict:
    import importlib.metadata as md
    out = {}
    for name in ("momawb", "numpy", "torch", "h5py", "mujoco", "gymnasium", "pettingzoo"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def history_index(episode_start: np.ndarray, length: int = 10) -> np.ndarray:
    """(N, L) indices of the L transitions before each t in its episode, oldest first; -1 = pad.

    ``episode_start[t]`` is the index of the first transition of t's episode. Vectorised.
    """
    n = len(episode_start)
    idx = np.arange(n, dtype=np.int64)[:, None] + np.arange(-length, 0, dtype=np.int64)[None, :]
    idx[idx < episode_start[:, None]] = -1
    return idx


@dataclass
class AgentViews:
    """Per-agent arrays derived from a dataset by a domain's observation functions.

    ``obs``: (N, n_agents, obs_dim); ``next_obs``: same; ``actions``: (N, n_agents, act_dim);
    ``features``: (N + 1, n_agents, obs_dim + action width) the (o, a) pairs fed to the memory,
    with a zero row at index N (= index -1) for padding; ``hist_index``: (N, L).
    """

    obs: np.ndarray
    next_obs: np.ndarray
    actions: np.ndarray
    features: np.ndarray
    hist_index: np.ndarray

    def history(self, idx: np.ndarray) -> np.ndarray:
        """Histories of transitions ``idx``: (B, n_agents, L, F), zero rows where padded."""
        return self.features[self.hist_index[idx]].transpose(0, 2, 1, 3)

    def next_history(self, idx: np.ndarray) -> np.ndarray:
        """Histories at t+1 (the window slid by the pair (o_t, a_t)), same episode only."""
        h = self.history(idx)
        cur = self.features[idx][:, :, None, :]            # (B, n_agents, 1, F)
        return np.concatenate([h[:, :, 1:], cur], axis=2)


@dataclass
class Dataset:
    """Transitions of a cooperative multi-agent task in D4RL's layout (see module docstring)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    qpos: np.ndarray | None = None
    qvel: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    source: str = "in-memory dataset"
    next_observed: np.ndarray | None = None   # (N,) bool; None = every s' is known

    def __post_init__(self) -> None:
        src = self.source
        self.observations = check_table(src, "observations", self.observations, "state_dim")
        self.next_observations = check_table(src, "next_observations", self.next_observations, "state_dim")
        self.actions = check_table(src, "actions", self.actions, "joint action width")
        self.rewards = check_team(src, "rewards", self.rewards).astype(np.float32, copy=False)
        self.terminals = check_flags(src, "terminals", self.terminals)
        self.timeouts = check_flags(src, "timeouts", self.timeouts)
        if self.qpos is not None:
            self.qpos = check_table(src, "infos/qpos", self.qpos, "nq", np.float64)
        if self.qvel is not None:
            self.qvel = check_table(src, "infos/qvel", self.qvel, "nv", np.float64)
        if self.next_observed is not None:
            self.next_observed = check_flags(src, "next_observed", self.next_observed)
            if self.next_observed.all():
                self.next_observed = None
        self._validate()
        self._views: dict = {}

    # ------------------------------------------------------------------ checks
    def _arrays(self) -> dict[str, np.ndarray]:
        out = {"observations": self.observations, "actions": self.actions, "rewards": self.rewards,
               "next_observations": self.next_observations, "terminals": self.terminals,
               "timeouts": self.timeouts}
        if self.qpos is not None:
            out["infos/qpos"] = self.qpos
        if self.qvel is not None:
            out["infos/qvel"] = self.qvel
        if self.next_observed is not None:
            out["infos/next_observed"] = self.next_observed
        return out

    def _validate(self) -> None:
        n = len(self.observations)
        if n == 0:
            raise DatasetError(f"{self.source}: the dataset is empty (key 'observations' has 0 rows)")
        for key, arr in self._arrays().items():
            if len(arr) != n:
                raise DatasetError(f"{self.source}: key {key!r} has {len(arr)} rows but 'observations' has {n}; "
                                   "the file is inconsistent")
            check_finite(self.source, key, arr)
        if self.next_observations.shape != self.observations.shape:
            raise DatasetError(f"{self.source}: key 'next_observations' has shape "
                               f"{self.next_observations.shape}, expected {self.observations.shape}")
        if self.next_observed is not None and (~self.next_observed & ~self.terminals).any():
            t = int(np.argmax(~self.next_observed & ~self.terminals))
            raise DatasetError(f"{self.source}: row {t} has no known next state (next_observed False) but is "
                               "not terminal; such a row has no TD or model target: drop it")

    @property
    def next_known(self) -> np.ndarray:
        """(N,) bool: s_{t+1} is a recorded state (False only on terminal rows of files without
        next_observations, whose s' is a placeholder that no target may use)."""
        return np.ones(len(self), bool) if self.next_observed is None else self.next_observed

    # ------------------------------------------------------------------ sizes and episodes
    def __len__(self) -> int:
        return len(self.observations)

    @property
    def state_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def episode_ends(self) -> np.ndarray:
        """True at the last transition of each episode (terminal, timeout or end of data)."""
        ends = self.terminals | self.timeouts
        ends = ends.copy()
        ends[-1] = True
        return ends

    @property
    def episode_start(self) -> np.ndarray:
        """(N,) index of the first transition of each transition's episode."""
        ends = self.episode_ends
        starts = np.zeros(len(self), np.int64)
        starts[1:] = np.where(ends[:-1], np.arange(1, len(self)), 0)
        return np.maximum.accumulate(starts)

    def episode_bounds(self) -> np.ndarray:
        """(E, 2) [start, end) of every episode."""
        ends = np.flatnonzero(self.episode_ends) + 1
        return np.stack([np.concatenate([[0], ends[:-1]]), ends], 1)

    def episode_returns(self) -> np.ndarray:
        """(E,) undiscounted return of every episode."""
        ep = np.cumsum(np.concatenate([[0], self.episode_ends[:-1]]))
        return np.bincount(ep, weights=self.rewards.astype(np.float64))

    def normalized_scores(self, domain) -> np.ndarray:
        """(E,) normalised score of every episode (PAPER.md Table 1 and Table 2)."""
        return domain.normalize(self.episode_returns())

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Reproducible (train, validation) transition indices; whole episodes go to one side
        (transitions are split directly when there are fewer than 10 episodes)."""
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        rng = np.random.default_rng(seed)
        bounds = self.episode_bounds()
        if len(bounds) >= 10:
            ep_of = np.cumsum(np.concatenate([[0], self.episode_ends[:-1]]))
            n_val = max(1, int(round(val_fraction * len(bounds))))
            val_eps = np.zeros(len(bounds), bool)
            val_eps[rng.permutation(len(bounds))[:n_val]] = True
            val = val_eps[ep_of]
        else:
            val = np.zeros(len(self), bool)
            val[rng.permutation(len(self))[:max(1, int(round(val_fraction * len(self))))]] = True
        return np.flatnonzero(~val), np.flatnonzero(val)

    # ------------------------------------------------------------------ per-agent views
    def agent_views(self, domain, history_length: int = 10) -> AgentViews:
        """Per-agent observations, actions and the history index (cached per domain task)."""
        key = (domain.name, domain.task, history_length)
        if key not in self._views:
            if self.state_dim != domain.state_dim:
                raise DatasetError(f"{self.source}: states have {self.state_dim} coordinates but "
                                   f"domain {domain.name}/{domain.task} expects {domain.state_dim}")
            if self.actions.shape[1] != domain.joint_action_dim:
                raise DatasetError(f"{self.source}: actions have width {self.actions.shape[1]} but "
                                   f"domain {domain.name}/{domain.task} expects {domain.joint_action_dim}")
            obs = domain.observe(self.observations)
            act = domain.split_actions(self.actions)
            feats = domain.history_row(obs, act)
            feats = np.concatenate([feats, np.zeros_like(feats[:1])], 0)
            self._views[key] = AgentViews(obs, domain.observe(self.next_observations), act, feats,
                                          history_index(self.episode_start, history_length))
        return self._views[key]

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write D4RL-layout HDF5 atomically; never replaces a file momawb did not create."""
        path = Path(path)
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
            try:
                with h5py.File(path, "r") as f:
                    ours = f.attrs.get("created_by") in (MARK, MARK.encode())
            except Exception:
                ours = False
            if not ours:
                raise FileExistsError(f"{path} was not written by momawb; refusing to overwrite it")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            with h5py.File(tmp, "w") as f:
                for key, arr in self._arrays().items():
                    f.create_dataset(key, data=arr, compression="gzip", compression_opts=1)
                f.attrs["created_by"] = MARK
                for k, v in self.meta.items():
                    if k != "created_by":
                        f.attrs[k] = json.dumps(v, default=str)
            publish(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.source = str(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, episode_length: int | None = None,
             observation_keys: list[str] | None = None, fallback_episode_length: int | None = None) -> "Dataset":
        """Read a momawb or D4RL-layout HDF5 file, or a Minari dataset (folder or local dataset id,
        see `load_minari`). ``episode_length``: steps per episode, used only for a file without
        ``timeouts`` (`momawb.dataset_files` says how episode ends are found and what happens to
        rows without a real next state); ``fallback_episode_length``: the same, used only when the
        file says nothing of its episode ends (a domain's loader passes its task's length).
        Raises FileNotFoundError, DatasetError."""
        p = Path(path).expanduser()
        if p.is_dir():
            return cls.load_minari(p, observation_keys=observation_keys)
        if p.exists() or p.suffix in (".hdf5", ".h5", ".hdf"):
            return cls(**read_d4rl(p, episode_length, fallback_episode_length))
        try:
            return cls.load_minari(path, observation_keys=observation_keys)
        except FileNotFoundError:
            raise FileNotFoundError(f"dataset {path} does not exist: it is neither a file, a folder nor a "
                                    "local Minari dataset id; generate it with momawb.generate or pass the "
                                    "path of a D4RL file or Minari dataset") from None

    @classmethod
    def load_minari(cls, folder: str | os.PathLike, *, observation_keys: list[str] | None = None) -> "Dataset":
        """Read a Minari dataset through the ``minari`` package: its folder (holding
        ``data/metadata.json`` and ``data/main_data.hdf5``), its ``data`` folder, or a dataset id
        stored locally (``$MINARI_DATASETS_PATH``, default ``~/.minari/datasets``). Each episode's
        T+1 observations give T transitions; the last is terminal if ``terminations[-1]``, else a
        timeout. Dict observations need ``observation_keys``: the parts concatenated, in that
        order, into the state. Raises FileNotFoundError, DatasetError."""
        return cls(**read_minari(folder, observation_keys))

    def select_state(self, columns) -> "Dataset":
        """The same transitions with the state cut to ``columns`` (e.g. D4RL Ant 111 -> 27)."""
        return Dataset(self.observations[:, columns], self.actions, self.rewards,
                       self.next_observations[:, columns], self.terminals, self.timeouts,
                       self.qpos, self.qvel, dict(self.meta), self.source, self.next_observed)

    def describe(self, domain=None) -> dict[str, Any]:
        """Sizes and return statistics (normalised when a domain is given)."""
        rets = self.episode_returns()
        out = {"transitions": len(self), "episodes": len(rets), "state_dim": self.state_dim,
               "action_width": self.actions.shape[1], "return_mean": float(rets.mean())}
        if domain is not None:
            s = self.normalized_scores(domain)
            out.update(score_min=float(s.min()), score_mean=float(s.mean()),
                       score_median=float(np.median(s)), score_max=float(s.max()))
        return out
