"""The Dataset container: momawb's own files, histories, splits (files of other tools:
test_dataset_files.py)."""
import os

import h5py
import numpy as np
import pytest

from momawb.datasets import Dataset, DatasetError, history_index
from momawb.domains import make
from momawb.generate import GameDatasetConfig, generate_game


def _small(n_episodes=3, T=4):
    return generate_game(GameDatasetConfig(n_episodes=n_episodes, episode_length=T, seed=1))


def test_roundtrip_d4rl_layout_and_metadata(tmp_path):
    ds = _small()
    path = ds.save(tmp_path / "d.hdf5")
    with h5py.File(path) as f:
        assert {"observations", "actions", "rewards", "next_observations", "terminals", "timeouts"} <= set(f)
        assert f.attrs["created_by"] == "momawb"
    back = Dataset.load(path)
    assert np.array_equal(back.actions, ds.actions) and back.meta["name"] == "custom-seed1"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's owner-only mode
    assert back.meta["versions"]["numpy"] == np.__version__


def test_never_overwrites(tmp_path):
    ds = _small()
    foreign = tmp_path / "user.hdf5"
    with h5py.File(foreign, "w") as f:
        f["observations"] = np.zeros((2, 1))
    with pytest.raises(FileExistsError, match="not written by momawb"):
        ds.save(foreign, overwrite=True)
    with pytest.raises(FileExistsError, match="exists"):
        ds.save(foreign)
    assert h5py.File(foreign).attrs.get("created_by") is None


@pytest.mark.parametrize("case,match", [
    ("missing", "does not exist"),
    ("corrupt", "not a readable HDF5"),
    ("truncated", "not a readable HDF5|cannot be read"),
    ("nokey", r"missing key\(s\) \['rewards'\]"),
    ("length", r"key 'rewards' has 3 rows but 'observations' has 12"),
    ("nan", r"key 'observations' holds NaN or inf at row 5"),
    ("empty", "empty"),
])
def test_bad_files_have_clear_errors(tmp_path, case, match):
    path = tmp_path / f"{case}.hdf5"
    ds = _small()
    if case == "corrupt":
        path.write_bytes(b"\x89HDF\r\n garbage" * 10)
    elif case == "truncated":
        ds.save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case != "missing":
        with h5py.File(path, "w") as f:
            obs = ds.observations.copy()
            if case == "nan":
                obs[5, 0] = np.nan
            f["observations"] = obs[:0] if case == "empty" else obs
            f["actions"], f["terminals"] = ds.actions, ds.terminals
            f["timeouts"], f["next_observations"] = ds.timeouts, ds.next_observations
            if case != "nokey":
                f["rewards"] = ds.rewards[:3] if case == "length" else ds.rewards
    err = FileNotFoundError if case == "missing" else DatasetError
    with pytest.raises(err, match=match) as e:
        Dataset.load(path)
    assert str(path) in str(e.value)


def test_history_index_vectorised_matches_loop():
    rng = np.random.default_rng(0)
    ends = rng.random(200) < 0.1
    ends[-1] = True
    starts = np.zeros(200, np.int64)
    s = 0
    for t in range(200):
        starts[t] = s
        if ends[t]:
            s = t + 1
    idx = history_index(starts, 10)
    for t in range(200):
        expect = [i if i >= starts[t] else -1 for i in range(t - 10, t)]
        assert idx[t].tolist() == expect


def test_histories_are_padded_and_cut_at_episode_start():
    ds = _small(n_episodes=3, T=4)
    views = ds.agent_views(make("game", episode_length=4), history_length=3)
    h = views.history(np.array([4, 6]))  # first and third step of episode 2
    assert h.shape == (2, 2, 3, 3)
    assert np.all(h[0] == 0)                           # episode start: all padding
    assert np.all(h[1, :, 0] == 0)                     # one padded slot
    act = ds.actions[4:6]
    assert np.array_equal(h[1, :, 1:, 1:].argmax(-1).T, act)  # one-hot of the agents' actions
    nh = views.next_history(np.array([5]))
    assert np.array_equal(nh[0], views.history(np.array([6]))[0])


def test_split_is_reproducible_and_by_episode():
    ds = generate_game(GameDatasetConfig(n_episodes=50, episode_length=5))
    tr, va = ds.split(0.2, seed=3)
    tr2, va2 = ds.split(0.2, seed=3)
    assert np.array_equal(va, va2) and len(va) == 50 and len(np.intersect1d(tr, va)) == 0
    assert set(np.unique(va // 5).tolist()) and all(np.isin(np.arange(e * 5, e * 5 + 5), va).all()
                                                     for e in np.unique(va // 5))


def test_width_mismatch_with_domain():
    ds = _small()
    with pytest.raises(DatasetError, match="actions have width 2 but domain game/3-agents expects 3"):
        ds.agent_views(make("game", n_agents=3))
