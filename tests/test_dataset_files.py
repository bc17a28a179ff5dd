"""Datasets written by other tools (issue 14, items 1-5): D4RL-layout files without timeouts or
next_observations, per-agent arrays, foreign attributes, keys and dtypes, and Minari datasets read
through the minari package (built here with minari's own storage API: its DataCollector needs jax).
Each input gets the right value or a DatasetError naming the file and the key."""
import json
import warnings

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch

from momawb.baselines.common import ReplaySampler
from momawb.dataset_files import DatasetWarning
from momawb.datasets import Dataset, DatasetError
from momawb.domains import Domain
from momawb.runs import Run
from momawb.model_trainer import EnsembleTrainer
from momawb.world_model import WorldModelConfig

S = 2   # state width of the toy files


def toy_domain(state_dim: int = S) -> Domain:
    return Domain(name="toy", task="files", n_agents=2, state_dim=state_dim,
                  obs_index=np.array([list(range(state_dim))] * 2), act_dim=1, n_actions=None,
                  episode_length=10, reference_returns=(0.0, 1.0))


def write(path, attrs=None, **keys):
    with h5py.File(path, "w") as f:
        for k, v in keys.items():
            f[k] = v
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return path


def episodes(n_episodes: int, T: int, step: float = 1.0):
    """States s_t = (e * 100 + t * step) on both columns: s' = s + step inside an episode."""
    e, t = np.divmod(np.arange(n_episodes * T), T)
    s = (e * 100.0 + t * step)[:, None].repeat(S, 1).astype(np.float32)
    ends = t == T - 1
    return s, ends


def load_quietly(path, **kw) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        return Dataset.load(path, **kw)


# ----------------------------------------------------------------------------- item 1: episode ends
def test_no_timeouts_no_terminals_asks_for_the_episode_length(tmp_path):
    """Issue 14 item 1: 3 episodes of 5 steps back to back, no timeouts, no next_observations."""
    s, _ = episodes(3, 5)
    path = write(tmp_path / "f.hdf5", observations=s, actions=np.zeros((15, 2)), rewards=np.ones(15),
                 terminals=np.zeros(15, bool))
    with pytest.raises(DatasetError, match=r"no 'timeouts' key.*episode_length=T") as e:
        Dataset.load(path)
    assert str(path) in str(e.value)
    with pytest.warns(DatasetWarning) as record:
        ds = Dataset.load(path, episode_length=5)
    assert "episode ends taken from episode_length=5" in str(record[0].message)
    assert "3 of 15 rows" in str(record[1].message)
    # each episode loses its last step (no real next state) and keeps 4 transitions
    assert len(ds) == 12 and ds.episode_bounds().tolist() == [[0, 4], [4, 8], [8, 12]]
    assert np.all(ds.next_observations - ds.observations == 1.0)       # never across a reset
    idx = ds.agent_views(toy_domain(), history_length=10).hist_index
    assert (idx[4] == -1).all() and (idx[8] == -1).all()               # histories start at each episode
    assert ds.meta["episode_ends_from"].startswith("episode_length=5")
    for attr in ("episode_length", "max_episode_steps"):                # or the file says it
        p = write(tmp_path / f"{attr}.hdf5", {attr: 5}, observations=s, actions=np.zeros((15, 2)),
                  rewards=np.ones(15), terminals=np.zeros(15, bool))
        assert load_quietly(p).episode_bounds().tolist() == [[0, 4], [4, 8], [8, 12]]
    with pytest.raises(ValueError, match="episode_length must be a positive integer"):
        Dataset.load(path, episode_length=0)


def test_episode_length_count_restarts_after_terminals(tmp_path):
    """D4RL's qlearning_dataset rule: an episode ends at a terminal or after T steps since the last end."""
    n = 12
    term = np.zeros(n, bool)
    term[2] = True
    obs = np.arange(n, dtype=np.float32)[:, None].repeat(S, 1)
    path = write(tmp_path / "f.hdf5", observations=obs, next_observations=obs + 0.5, actions=np.zeros((n, 2)),
                 rewards=np.ones(n), terminals=term)
    ds = load_quietly(path, episode_length=4)
    assert np.flatnonzero(ds.timeouts).tolist() == [6, 10] and np.flatnonzero(ds.terminals).tolist() == [2]


def test_episode_ends_found_from_next_observations(tmp_path):
    """No timeouts, but next_observations: a row whose s' is not the next row's s ends an episode."""
    s, ends = episodes(3, 5)
    path = write(tmp_path / "f.hdf5", observations=s, next_observations=s + 1, actions=np.zeros((15, 2)),
                 rewards=np.ones(15), terminals=np.zeros(15, bool))
    with pytest.warns(DatasetWarning, match="next_observations"):
        ds = Dataset.load(path)
    assert len(ds) == 15 and np.array_equal(ds.episode_ends, ends)           # nothing dropped: s' is real
    # states that never change show no boundary: the length is asked for, never guessed
    const = np.ones((15, S), np.float32)
    path = write(tmp_path / "c.hdf5", observations=const, next_observations=const, actions=np.zeros((15, 2)),
                 rewards=np.ones(15), terminals=np.zeros(15, bool))
    with pytest.raises(DatasetError, match="show no episode boundary.*episode_length"):
        Dataset.load(path)
    assert load_quietly(path, episode_length=5).episode_bounds().tolist() == [[0, 5], [5, 10], [10, 15]]


def test_unflagged_discontinuity_becomes_an_episode_end(tmp_path):
    s, ends = episodes(3, 5)
    timeouts = ends.copy()
    timeouts[4] = False                                                 # the file forgot one end
    path = write(tmp_path / "f.hdf5", observations=s, next_observations=s + 1, actions=np.zeros((15, 2)),
                 rewards=np.ones(15), terminals=np.zeros(15, bool), timeouts=timeouts)
    with pytest.warns(DatasetWarning, match=r"1 rows \(first: 4\)"):
        ds = Dataset.load(path)
    assert np.array_equal(ds.episode_ends, ends) and ds.meta["episode_ends_added"] == 1


# ----------------------------------------------------------------------------- item 2: no real next state
def qlearning_dataset(obs, actions, rewards, terminals, timeouts):
    """D4RL's qlearning_dataset (d4rl/__init__.py) with timeouts, re-stated as a loop."""
    out = {k: [] for k in ("obs", "act", "rew", "nxt", "done")}
    for i in range(len(obs) - 1):
        if timeouts[i]:
            continue
        for k, v in zip(out, (obs[i], actions[i], rewards[i], obs[i + 1], terminals[i])):
            out[k].append(v)
    return {k: np.array(v) for k, v in out.items()}


def test_rows_without_next_state_are_dropped_like_d4rl(tmp_path):
    """Issue 14 item 2 (s' = s + 1, timeouts at episode ends, no next_observations), and the same
    transitions as D4RL's own qlearning_dataset on a file with terminals and timeouts."""
    s, ends = episodes(4, 10)
    n = len(s)
    path = write(tmp_path / "f.hdf5", observations=s, actions=np.zeros((n, 2)), rewards=np.ones(n),
                 terminals=np.zeros(n, bool), timeouts=ends)
    with pytest.warns(DatasetWarning, match="4 of 40 rows .* dropped"):
        ds = Dataset.load(path)
    assert len(ds) == 36 and ds.meta["rows_dropped_without_next_state"] == 4
    assert np.all(ds.next_observations - ds.observations == 1.0) and ds.next_observed is None
    assert ds.episode_bounds().tolist() == [[0, 9], [9, 18], [18, 27], [27, 36]]

    g = np.random.default_rng(0)
    n = 300
    obs = g.normal(size=(n, S)).astype(np.float32)
    act, rew = g.normal(size=(n, 2)).astype(np.float32), g.normal(size=n).astype(np.float32)
    term, tout = g.random(n) < 0.03, g.random(n) < 0.05
    tout &= ~term                                       # D4RL skips a row flagged both; momawb keeps it
    term[-1] = tout[-1] = False
    path = write(tmp_path / "r.hdf5", observations=obs, actions=act, rewards=rew, terminals=term, timeouts=tout)
    ds, ref = load_quietly(path), qlearning_dataset(obs, act, rew, term, tout)
    assert np.array_equal(ds.observations, ref["obs"]) and np.array_equal(ds.actions, ref["act"])
    assert np.array_equal(ds.rewards, ref["rew"]) and np.array_equal(ds.terminals, ref["done"])
    live = ~ref["done"]                                 # terminal rows: D4RL's s' is the next episode's s_0
    assert np.array_equal(ds.next_observations[live], ref["nxt"][live])
    assert not ds.next_known[ref["done"]].any() and ds.next_known[live].all()


def test_world_model_and_replay_targets_never_see_made_up_next_states(tmp_path):
    """The issue measured a delta-target mean of 0.889 instead of 1: 4 episodes of 10, s' = s + 1."""
    s, ends = episodes(4, 10)
    n = len(s)
    term = ends & (np.arange(n) < 20)                   # episodes 0, 1 terminate, 2, 3 time out
    path = write(tmp_path / "f.hdf5", observations=s, actions=np.zeros((n, 2)), rewards=np.ones(n),
                 terminals=term, timeouts=ends & ~term)
    ds = load_quietly(path)
    assert len(ds) == 38 and ds.meta["terminal_rows_without_next_state"] == 2
    dom, cfg = toy_domain(), WorldModelConfig(hidden=(8,), batch_size=16, val_fraction=0.2, device="cpu")
    trainer = EnsembleTrainer(ds, dom, cfg, Run("wm", cfg, root=tmp_path), torch.device("cpu"))
    assert trainer.stats["out_mean"][:S].tolist() == [1.0, 1.0]       # old code: 0.889 (placeholders: 0)
    ys = trainer.train[1] * trainer.stats["out_std"] + trainer.stats["out_mean"]
    known = trainer.known.bool()
    assert torch.allclose(ys[known, :S], torch.ones(1)) and (~known).sum() >= 1
    val = trainer.val[1] * trainer.stats["out_std"] + trainer.stats["out_mean"]
    assert torch.allclose(val[:, :S], torch.ones(1))                  # validation: real s' only
    # the state loss does not depend on the placeholder s' of terminal rows at all
    other = Dataset(ds.observations, ds.actions, ds.rewards, ds.next_observations + 50.0 * ~ds.next_known[:, None],
                    ds.terminals, ds.timeouts, next_observed=ds.next_observed)
    t2 = EnsembleTrainer(other, dom, cfg, Run("wm2", cfg, root=tmp_path), torch.device("cpu"))
    t2.ensemble.load_state_dict(trainer.ensemble.state_dict())
    idx = torch.arange(len(trainer.train[0])).expand(cfg.n_members, -1)
    a = trainer.losses(*(v[idx] for v in trainer.train), trainer.known[idx])
    b = t2.losses(*(v[idx] for v in t2.train), t2.known[idx])
    assert all(torch.equal(a[k], b[k]) for k in a)
    # replay: every sampled row either has its real s' or is terminal (TD: r + gamma (1 - d) V(s') = r)
    rs = ReplaySampler(ds, dom, torch.device("cpu"), np.random.default_rng(0))
    batch = rs.get(np.arange(len(ds)))
    real = (batch.next_states - batch.states == 1).all(1)
    assert torch.all(real | (batch.terminals == 1)) and int((~real).sum()) == 2


def test_next_observed_round_trip_and_invariant(tmp_path):
    s, ends = episodes(2, 4)
    path = write(tmp_path / "f.hdf5", observations=s, actions=np.zeros((8, 2)), rewards=np.ones(8),
                 terminals=ends, timeouts=np.zeros(8, bool))
    ds = load_quietly(path)
    back = Dataset.load(ds.save(tmp_path / "ours.hdf5"))
    assert np.array_equal(back.next_known, [True, True, True, False] * 2)
    assert np.array_equal(ds.select_state([0]).next_known, back.next_known)
    with pytest.raises(DatasetError, match="row 0 has no known next state .* not terminal"):
        Dataset(s, np.zeros((8, 2)), np.ones(8), s, np.zeros(8), ends, next_observed=np.zeros(8, bool))


# ----------------------------------------------------------------------------- item 4: per-agent arrays
@pytest.mark.parametrize("key", ["rewards", "terminals", "timeouts"])
def test_per_agent_arrays_name_the_team_array_they_need(tmp_path, key):
    n = 40
    arrays = dict(observations=np.zeros((n, S)), actions=np.zeros((n, 2)), rewards=np.ones(n),
                  terminals=np.zeros(n, bool), timeouts=np.zeros(n, bool), next_observations=np.zeros((n, S)))
    arrays[key] = np.zeros((n, 2), bool if key != "rewards" else np.float32)
    path = write(tmp_path / "f.hdf5", **arrays)
    msg = rf"key '{key}' has shape \(40, 2\): one column per agent.*\(N,\) team array \(40,\)"
    with pytest.raises(DatasetError, match=msg) as e:
        Dataset.load(path)
    assert str(path) in str(e.value)
    with pytest.raises(DatasetError, match=msg):                     # in memory too: never flattened
        Dataset(**{k.replace("next_observations", "next_observations"): v for k, v in arrays.items()})
    arrays[key] = arrays[key][:, :1]                                 # (N, 1) is a team array
    assert len(Dataset.load(write(tmp_path / "g.hdf5", **arrays))) == n


# ----------------------------------------------------------------------------- item 5: foreign content
def test_foreign_attributes_and_keys_are_kept_as_metadata(tmp_path):
    s, ends = episodes(2, 5)
    path = tmp_path / "foreign.hdf5"
    with h5py.File(path, "w") as f:
        for k, v in dict(observations=s, next_observations=s + 1, actions=np.zeros((10, 2)), rewards=np.ones(10),
                         terminals=np.zeros(10, bool), timeouts=ends).items():
            f[k] = v
        f.attrs["env"] = b"Ant-v2"
        f.attrs["json_like"] = "123"
        f.attrs["ints"] = np.arange(3)
        f.attrs["names"] = np.array([b"a", b"b"])
        f.attrs["vlen"] = np.array(["x", "yz"], dtype=h5py.string_dtype())
        f.attrs["empty"] = h5py.Empty("f")
        f.attrs["nan"] = np.float64("nan")
        f.attrs["flag"] = np.bool_(True)
        f.attrs["created_by"] = "d4rl"
        f["metadata/algorithm"] = b"SAC"
        f["metadata/iteration"] = 7
        f["metadata/policy/fc0/weight"] = np.zeros((4, 3))
        f["infos/goal"] = np.zeros((10, 2))
    ds = Dataset.load(path)
    m = ds.meta
    assert m["env"] == "Ant-v2" and m["json_like"] == "123" and m["ints"] == [0, 1, 2]
    assert m["names"] == ["a", "b"] and m["vlen"] == ["x", "yz"] and m["empty"] is None
    assert np.isnan(m["nan"]) and m["flag"] is True and m["file_created_by"] == "d4rl"
    assert m["file_keys"] == {"metadata/algorithm": "SAC", "metadata/iteration": 7}
    assert m["ignored_keys"] == ["infos/goal (10, 2)", "metadata/policy/fc0/weight (4, 3)"]
    back = Dataset.load(ds.save(tmp_path / "ours.hdf5"))              # metadata survives momawb's own file
    assert back.meta["names"] == ["a", "b"] and back.meta["file_keys"]["metadata/algorithm"] == "SAC"


VARIANTS = {
    "bytes": lambda n, w: np.array([b"x"] * n),
    "text": lambda n, w: np.array(["x"] * n, dtype=h5py.string_dtype()),
    "records": lambda n, w: np.zeros(n, dtype=[("a", "f4"), ("b", "i4")]),
    "complex": lambda n, w: np.zeros((n, w), np.complex64),
    "bool": lambda n, w: np.ones((n, w), bool),
    "int": lambda n, w: np.ones((n, w), np.int64),
    "uint8": lambda n, w: np.ones((n, w), np.uint8),
    "float16": lambda n, w: np.ones((n, w), np.float16),
    "nan": lambda n, w: np.full((n, w), np.nan),
    "two": lambda n, w: np.full((n, w), 2.0),
    "scalar": lambda n, w: np.float64(1.0),
    "short": lambda n, w: np.zeros((n - 1, w)),
    "empty": lambda n, w: np.zeros((0, w)),
    "images": lambda n, w: np.zeros((n, 4, 4, 3), np.uint8),
    "column": lambda n, w: np.zeros((n, 1)),
    "wide": lambda n, w: np.zeros((n, 3)),
}
KEYS = {"observations": S, "next_observations": S, "actions": 2, "rewards": 1, "terminals": 1, "timeouts": 1,
        "infos/qpos": 3}


@pytest.mark.parametrize("key", list(KEYS))
def test_every_odd_array_loads_or_names_the_file_and_key(tmp_path, key):
    """The whole kind of item 5: any dtype or shape another tool can write under any key either
    loads with the right value or fails with a DatasetError naming the file and the key."""
    n, (s, ends) = 10, episodes(2, 5)
    base = dict(observations=s, next_observations=s + 1, actions=np.zeros((n, 2)), rewards=np.ones(n),
                terminals=np.zeros(n, bool), timeouts=ends, **{"infos/qpos": np.zeros((n, 3))})
    outcomes = {}
    for name, make in VARIANTS.items():
        value = make(n, KEYS[key])
        if key in ("rewards", "terminals", "timeouts") and isinstance(value, np.ndarray) and value.ndim == 2 \
                and value.shape[1] == KEYS[key]:
            value = value[:, 0]
        path = write(tmp_path / f"{name}.hdf5", **{**base, key: value})
        try:
            ds = load_quietly(path)
            outcomes[name] = "ok"
            if name in ("bool", "int", "uint8", "float16"):
                want = {"infos/qpos": np.float64, "terminals": bool, "timeouts": bool}.get(key, np.float32)
                assert getattr(ds, {"infos/qpos": "qpos"}.get(key, key)).dtype == want
        except DatasetError as e:
            assert str(path) in str(e), (name, e)
            assert repr(key) in str(e) or (key == "next_observations" and "episode" in str(e)) \
                or name == "empty" and key == "observations", (name, str(e))
            outcomes[name] = "error"
    for bad in ("bytes", "text", "records", "complex", "nan", "scalar", "short", "images"):
        assert outcomes[bad] == "error", (bad, outcomes)
    for good in ("bool", "int", "uint8", "float16"):
        expect = "error" if good in ("bool", "int", "uint8") and key == "next_observations" else "ok"
        assert outcomes[good] in ("ok", expect), (good, outcomes)
    if key in ("terminals", "timeouts"):
        assert outcomes["two"] == "error"


def test_groups_and_minari_files_passed_as_d4rl(tmp_path):
    s, ends = episodes(2, 5)
    path = tmp_path / "dict.hdf5"
    with h5py.File(path, "w") as f:
        f["observations/observation"], f["observations/desired_goal"] = s, s
        f["actions"], f["rewards"], f["terminals"] = np.zeros((10, 2)), np.ones(10), ends
    with pytest.raises(DatasetError, match=r"key 'observations' is a group holding \['desired_goal', 'observation'\]"):
        Dataset.load(path)
    path = tmp_path / "main_data.hdf5"
    with h5py.File(path, "w") as f:
        f["episode_0/rewards"] = np.ones(3)
    with pytest.raises(DatasetError, match="Minari episode groups .* pass the Minari dataset folder"):
        Dataset.load(path)


# ----------------------------------------------------------------------------- Minari (item 3)
def minari_dataset(folder, eps, obs_space=None, act_space=None):
    """A Minari dataset written by minari's own storage API (what DataCollector writes, without jax)."""
    import minari
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage
    folder.mkdir(parents=True)
    st = MinariStorage.new(folder / "data", observation_space=obs_space or gym.spaces.Box(-np.inf, np.inf, (S,)),
                           action_space=act_space or gym.spaces.Box(-1, 1, (4,)))
    st.update_metadata({"dataset_id": "momawb/test-v0", "minari_version": minari.__version__})
    st.update_episodes([EpisodeBuffer(**e) for e in eps])
    return folder


def box_episode(T, e=0, terminal=False, **extra):
    obs = np.arange((T + 1) * S, dtype=np.float32).reshape(T + 1, S) + 100 * e
    return dict(observations=obs, actions=np.ones((T, 4), np.float32), rewards=np.ones(T),
                terminations=np.array([False] * (T - 1) + [terminal]), truncations=np.zeros(T, bool), **extra)


def test_minari_dataset_read_through_minari(tmp_path, monkeypatch):
    qpos = np.arange(4 * 3, dtype=np.float64).reshape(4, 3)
    folder = minari_dataset(tmp_path / "mini", [box_episode(3, 0, infos={"qpos": qpos, "qvel": qpos}),
                                                box_episode(2, 1, terminal=True, infos={"qpos": qpos[:3],
                                                                                         "qvel": qpos[:3]}),
                                                box_episode(1, 2)])
    with h5py.File(folder / "data" / "main_data.hdf5", "a") as f:   # an empty episode (minari cannot write one)
        g = f["episode_2"]
        for k in ("actions", "rewards", "terminations", "truncations", "observations"):
            v = g[k][()]
            del g[k]
            g[k] = v[:1] if k == "observations" else v[:0]
    import minari
    assert len(minari.MinariDataset(folder / "data")) == 3            # minari's own reader agrees
    ds = Dataset.load(folder)
    assert len(ds) == 5 and ds.timeouts.tolist() == [False, False, True, False, False]
    assert ds.terminals.tolist()[-1] and np.array_equal(ds.next_observations[0], [2, 3])
    assert np.array_equal(ds.next_observations[3], [102, 103]) and ds.episode_returns().tolist() == [3.0, 2.0]
    assert ds.qpos is not None and np.array_equal(ds.qpos[:3], qpos[:3]) and np.array_equal(ds.qpos[3:], qpos[:2])
    assert ds.meta["empty_episodes_skipped"] == 1 and ds.meta["minari"]["dataset_id"] == "momawb/test-v0"
    assert len(Dataset.load_minari(folder / "data")) == 5                  # the data folder itself
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    assert len(Dataset.load("mini")) == 5                                   # a local dataset id
    with pytest.raises(FileNotFoundError, match="neither a file, a folder nor a local Minari dataset id"):
        Dataset.load("no/such-v0")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match="is not a Minari dataset: neither .*metadata.json"):
        Dataset.load(tmp_path / "plain")


def test_minari_dict_observations_need_observation_keys(tmp_path):
    """Issue 14 item 3: observations in a Dict space (observation, desired_goal)."""
    space = gym.spaces.Dict({"observation": gym.spaces.Box(-9, 9, (3,)), "desired_goal": gym.spaces.Box(-9, 9, (2,))})
    T = 4
    ep = box_episode(T)
    ep["observations"] = {"observation": np.zeros((T + 1, 3), np.float32),
                          "desired_goal": np.arange(T + 1, dtype=np.float32)[:, None].repeat(2, 1)}
    folder = minari_dataset(tmp_path / "dict", [ep], obs_space=space)
    with pytest.raises(DatasetError, match=r"episode 0: 'observations' is a Dict space with keys .*desired_goal.*"
                                           r"observation.*observation_keys") as e:
        Dataset.load(folder)
    assert str(folder) in str(e.value)
    ds = Dataset.load(folder, observation_keys=["observation", "desired_goal"])
    assert ds.state_dim == 5 and np.array_equal(ds.observations[:, 3:], ep["observations"]["desired_goal"][:-1])
    assert ds.meta["observation_keys"] == ["observation", "desired_goal"]
    with pytest.raises(DatasetError, match=r"observation_keys \['goal'\] are not in"):
        Dataset.load(folder, observation_keys=["goal"])
    # the file holds a Dict group while its metadata says Box (the hand-made case of the issue)
    meta = json.loads((folder / "data" / "metadata.json").read_text())
    meta["observation_space"] = json.dumps({"type": "Box", "dtype": "float32", "shape": [5],
                                            "low": [-9.0] * 5, "high": [9.0] * 5})
    (folder / "data" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"episode 0: minari cannot read it .*'observations': \"group "
                                           r"\['desired_goal', 'observation'\]\""):
        Dataset.load(folder)


def test_minari_per_agent_rewards_and_foreign_episodes(tmp_path):
    ep = box_episode(3)
    ep["rewards"] = np.ones((3, 2))
    with pytest.raises(DatasetError, match=r"episode 0: key 'rewards' has shape \(3, 2\): one column per agent"):
        Dataset.load(minari_dataset(tmp_path / "a", [ep]))
    folder = minari_dataset(tmp_path / "b", [box_episode(3), box_episode(2, 1)])
    with h5py.File(folder / "data" / "main_data.hdf5", "a") as f:
        del f["episode_1/rewards"]
    with pytest.raises(DatasetError, match=r"episode 1: minari cannot read it .*missing key\(s\) \['rewards'\]"):
        Dataset.load(folder)
    folder = minari_dataset(tmp_path / "c", [box_episode(3)])
    with h5py.File(folder / "data" / "main_data.hdf5", "a") as f:
        obs = f["episode_0/observations"][()]
        del f["episode_0/observations"]
        f["episode_0/observations"] = obs[:-1]                        # T rows instead of T + 1
    with pytest.raises(DatasetError, match=r"episode 0: the keys' lengths do not match \({'observations': 3, "
                                           r"'actions': 3.* T\+1 observations"):
        Dataset.load(folder)
    folder = minari_dataset(tmp_path / "d", [box_episode(3)])
    (folder / "data" / "metadata.json").write_text('{"total_episodes": 1, "obse')
    with pytest.raises(DatasetError, match="minari cannot open this dataset .*metadata.json"):
        Dataset.load(folder)
    folder = minari_dataset(tmp_path / "e", [box_episode(3)])
    meta = json.loads((folder / "data" / "metadata.json").read_text())
    meta["minari_version"] = "0.1.0"
    (folder / "data" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="minari cannot open this dataset .*does not support"):
        Dataset.load(folder)
    ep = box_episode(3)
    ep["observations"][1, 0] = np.nan
    with pytest.raises(DatasetError, match="episode 0: key 'observations' holds NaN or inf at row 1"):
        Dataset.load(minari_dataset(tmp_path / "f", [ep]))
    folder = minari_dataset(tmp_path / "g", [box_episode(3), box_episode(2, 1)])
    main = folder / "data" / "main_data.hdf5"
    with h5py.File(main, "a") as f:                                   # keys and groups of other tools
        f["episode_0/extra"] = np.zeros(7)
        f["episode_0"].attrs["note"] = "by another tool"
        f["episode_1/infos/label"] = np.array([b"a"] * 3)
        f["notes/readme"] = b"hello"
    assert len(Dataset.load(folder)) == 5
    main.write_bytes(main.read_bytes()[:3000])                        # truncated
    with pytest.raises(DatasetError, match=r"episode 0: minari cannot read it .*OSError"):
        Dataset.load(folder)
    main.unlink()
    with pytest.raises(DatasetError, match="minari cannot open this dataset .*No data found"):
        Dataset.load(folder)


@pytest.mark.parametrize("key", ["observations", "actions", "rewards", "terminations", "truncations"])
def test_every_odd_minari_array_loads_or_names_the_episode(tmp_path, key):
    """Item 5 for Minari: odd content written into an episode by another tool."""
    outcomes = {}
    for name, make in VARIANTS.items():
        folder = minari_dataset(tmp_path / name, [box_episode(4), box_episode(4, 1)])
        T = 4
        n = T + 1 if key == "observations" else T
        value = make(n, {"observations": S, "actions": 4}.get(key, 1))
        if key in ("rewards", "terminations", "truncations") and isinstance(value, np.ndarray) \
                and value.ndim == 2 and value.shape[1] == 1:
            value = value[:, 0]
        with h5py.File(folder / "data" / "main_data.hdf5", "a") as f:
            del f[f"episode_1/{key}"]
            f[f"episode_1/{key}"] = value
        try:
            Dataset.load(folder)
            outcomes[name] = "ok"
        except DatasetError as e:
            assert str(folder) in str(e) and "episode 1" in str(e), (name, str(e))
            outcomes[name] = "error"
    for bad in ("bytes", "text", "records", "complex", "nan", "scalar", "short", "empty", "images"):
        assert outcomes[bad] == "error", (bad, outcomes)
    assert all(outcomes[good] == "ok" for good in ("bool", "int", "uint8", "float16"))
