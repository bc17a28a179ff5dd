"""Ant datasets: the generator (layout, rewards against the ground truth, cache, resume, medium
choice) and users' D4RL (111-d) and Minari (105-d) Ant files through the same `Dataset`."""
import gymnasium as gym
import h5py
import numpy as np
import pytest

from momawb import domains, generate
from momawb.datasets import Dataset, DatasetError
from momawb.domains import ant
from momawb.generate import ant as gen_ant
from momawb.generate.__main__ import main as generate_main

TINY = dict(learner_steps=4096, n_envs=4, checkpoint_every=2048, size=1200, eval_episodes=1, batch_episodes=2,
            medium_min_speed_frac=0.0, ppo={"n_steps": 512, "batch_size": 256, "n_epochs": 2})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ant")
    return root, {name: generate.named_dataset("ant", name, root=root, progress=False, **TINY) for name in gen_ant.DATASETS}


def test_layout_states_and_rewards_match_the_ground_truth(tiny):
    _, data = tiny
    sim = ant.AntSimulator()
    dom = domains.make("ant")
    for name, ds in data.items():
        assert ds.meta["domain"] == "ant" and ds.meta["generator_config"]["name"] == name
        assert ds.observations.shape[1] == 27 and ds.actions.shape[1] == 8 and ds.qpos.shape[1] == 15
        assert np.allclose(ds.observations, np.concatenate([ds.qpos[:, 2:], ds.qvel], 1), atol=1e-5)
        assert (ds.terminals | ds.timeouts).any() and not (ds.terminals & ds.timeouts).any()
        if name != "full-replay":
            assert len(ds) == TINY["size"]
        rows = np.random.default_rng(0).choice(len(ds), 20, replace=False)
        out = sim.step(ds.observations[rows], dom.split_actions(ds.actions[rows]), ds.qpos[rows], ds.qvel[rows])
        assert np.allclose(out.next_states, ds.next_observations[rows], atol=1e-4), name
        assert np.allclose(out.rewards, ds.rewards[rows], atol=1e-3), name          # the domain's reward
        assert np.array_equal(out.terminals, ds.terminals[rows]), name
    refs = data["expert"].meta["reference_returns"]
    root, _ = tiny
    cfg = gen_ant.ant_dataset_config("random", **TINY)
    whole = gen_ant.collect(cfg, gen_ant._learner_dir(cfg, root), 0, progress=False)   # cached batches
    assert refs["random"] == pytest.approx(np.mean([e["rewards"].sum() for e in whole]), rel=1e-9)
    assert data["medium"].meta["medium_snapshot"] == 2048                      # the only snapshot in between
    assert domains.make("ant").for_dataset(data["expert"]).reference_returns == (refs["random"], refs["expert"])


def test_cached_reproducible_and_resumable(tiny, tmp_path):
    root, data = tiny
    learner = gen_ant._learner_dir(gen_ant.ant_dataset_config("expert", **TINY), root)
    again = generate.named_dataset("ant", "medium", root=root, progress=False, **TINY)    # from the cache
    assert again.source.endswith(".hdf5") and np.array_equal(again.actions, data["medium"].actions)
    # a killed collection resumes: the missing batch is collected again, identically
    batch = sorted(learner.glob("collect-2048-*.npz"))[0]
    before = batch.read_bytes()
    batch.unlink()
    cfg = gen_ant.ant_dataset_config("medium", **TINY)
    eps = gen_ant.collect(cfg, learner, 2048, progress=False)
    assert batch.read_bytes() == before and sum(len(e["actions"]) for e in eps) >= TINY["size"]
    # a killed learner resumes from its last complete snapshot
    (learner / "snapshot-4096.zip").unlink()
    assert gen_ant._snapshots(learner)[-1] == 2048
    gen_ant.train_learner(cfg, root, progress=False, log=None)
    assert gen_ant._snapshots(learner)[-1] == 4096
    assert len(__import__("json").loads((learner / "learner.json").read_text())["sessions"]) == 2


def test_medium_is_the_walking_snapshot_closest_to_a_third_of_the_expert():
    cfg = gen_ant.AntDatasetConfig(name="medium", medium_min_speed_frac=0.25)
    stats = {0: {"return": 900, "speed": 0.0}, 1: {"return": 1000, "speed": 0.01}, 2: {"return": 1300, "speed": 0.5},
             3: {"return": 2000, "speed": 1.0}, 4: {"return": 3000, "speed": 2.0}}
    assert gen_ant.choose_medium(cfg, stats) == 2                # 1 is nearer 1,000 but stands still
    with pytest.raises(RuntimeError, match="no learner snapshot walks forward"):
        gen_ant.choose_medium(cfg, {0: stats[0], 1: stats[1], 4: stats[4]})


def test_command_line_prints_the_return_statistics(tiny, capsys, monkeypatch):
    root, _ = tiny
    cfg = gen_ant.ant_dataset_config("random", **TINY)
    monkeypatch.setattr("momawb.config.read_preset", lambda nb, preset: ({"ant_generator": TINY}, "x.yaml"))
    assert generate_main(["ant", "--dataset", "random", "--preset", "tiny", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"{cfg.size:,} transitions" in out and "min / mean / median / max" in out and "-325.6" in out
    with pytest.raises(SystemExit):
        generate_main(["ant", "--dataset", "nope"])
    with pytest.raises(SystemExit):
        generate_main(["game", "--dataset", "neutral", "--workers", "0"])


# ------------------------------------------------------------------------ users' files
def _state_and_action(n):
    rng = np.random.default_rng(1)
    return rng.normal(size=(n, 27)).astype(np.float32), rng.uniform(-1, 1, (n, 8)).astype(np.float32)


def _check_views(ds, state, action):
    """Per-agent views of transition 0, by hand from the module docstring's tables."""
    po = domains.make("ant", observation="po")
    views = ds.agent_views(po)
    assert np.allclose(views.obs[0, 0, :15], state[0, [5, 6, 19, 20, 0, 1, 2, 3, 4, 13, 14, 15, 16, 17, 18]])
    assert np.allclose(views.obs[0, 1, :4], state[0, [7, 8, 21, 22]])
    assert np.allclose(views.obs[0, 3, :4], state[0, [11, 12, 25, 26]])
    # actions in actuator order (hip_4, ankle_4, hip_1, ...): agent_0 drives hip_1/ankle_1 = columns 2, 3
    assert np.allclose(views.actions[0], action[0, [[2, 3], [4, 5], [6, 7], [0, 1]]])
    fo = ds.agent_views(domains.make("ant", observation="fo"))
    assert np.allclose(fo.obs[0], np.repeat(state[:1], 4, 0))


@pytest.mark.filterwarnings("ignore::momawb.datasets.DatasetWarning")   # the hopper file's unflagged ends
def test_d4rl_ant_file_is_cut_to_the_27_d_state(tmp_path):
    n = 6
    state, action = _state_and_action(n)
    obs = np.concatenate([state, np.full((n, 84), 7.0, np.float32)], 1)          # + cfrc_ext (zero-free)
    path = tmp_path / "ant_medium-v2.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"], f["actions"], f["rewards"] = obs, action, np.ones(n, np.float32)
        f["next_observations"] = np.roll(obs, -1, 0)
        f["terminals"], f["timeouts"] = np.zeros(n, bool), np.eye(n, dtype=bool)[-1]
        f["infos/qpos"], f["infos/qvel"] = np.zeros((n, 15)), np.zeros((n, 14))
    ds = generate.named_dataset("ant", str(path))
    assert ds.state_dim == 27 and "111" in ds.meta["state_columns"]
    _check_views(ds, state, action)
    assert domains.make("ant").for_dataset(ds).reference_returns == ant.D4RL_REFERENCE_RETURNS
    bad = tmp_path / "hopper.hdf5"
    with h5py.File(bad, "w") as f:
        f["observations"], f["actions"], f["rewards"] = obs[:, :11], action[:, :3], np.ones(n)
        f["next_observations"] = obs[:, :11]
        f["terminals"], f["timeouts"] = np.zeros(n, bool), np.eye(n, dtype=bool)[-1]
    with pytest.raises(DatasetError, match="width 11 .* not an Ant"):
        generate.named_dataset("ant", str(bad))


@pytest.mark.filterwarnings("ignore:.*no 'next_observations' key")   # the v0 file's dropped last rows (expected)
def test_d4rl_v0_ant_file_without_timeouts_is_cut_at_ant_episode_length(tmp_path):
    """A D4RL v0 file (no timeouts, no next_observations) stopped the Ant notebook with advice
    to pass episode_length, which the notebook cannot; Ant's length is known: 1,000 steps."""
    from momawb.datasets import DatasetWarning
    n = 2300
    rng = np.random.default_rng(0)
    path = tmp_path / "ant_medium-v0.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(n, 111)).astype(np.float32)
        f["actions"], f["rewards"] = rng.uniform(-1, 1, (n, 8)).astype(np.float32), np.ones(n, np.float32)
        f["terminals"] = np.arange(n) == 1500                                       # a fall restarts the count
    with pytest.warns(DatasetWarning, match="episode_length=1000 \\(the task's episode length\\)"):
        ds = generate.named_dataset("ant", str(path))
    assert ds.meta["episode_ends_from"] == "episode_length=1000 (the task's episode length)"
    ends = np.flatnonzero(ds.timeouts | ds.terminals)      # rows 999 and 2299 lack a next state: dropped
    assert len(ds) == n - 2 and ends[:2].tolist() == [998, 1499]
    with h5py.File(tmp_path / "other.hdf5", "w") as f:                       # outside Ant: still asked for
        f["observations"], f["actions"] = np.zeros((n, 3), np.float32), np.zeros((n, 1), np.float32)
        f["rewards"], f["terminals"] = np.ones(n, np.float32), np.zeros(n, bool)
    with pytest.raises(DatasetError, match="episode_length=T"):
        Dataset.load(tmp_path / "other.hdf5")


def test_minari_ant_dataset_through_minari(tmp_path):
    import minari
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage
    T = 5
    state, action = _state_and_action(T + 1)
    obs = np.concatenate([state, np.full((T + 1, 78), 3.0, np.float32)], 1)     # Ant-v5's default 105-d
    (tmp_path / "ant").mkdir()
    st = MinariStorage.new(tmp_path / "ant" / "data", observation_space=gym.spaces.Box(-np.inf, np.inf, (105,)),
                           action_space=gym.spaces.Box(-1, 1, (8,)))
    st.update_metadata({"dataset_id": "mujoco/ant/medium-v0", "minari_version": minari.__version__})
    st.update_episodes([EpisodeBuffer(observations=obs, actions=action[:T], rewards=np.ones(T),
                                      terminations=np.zeros(T, bool), truncations=np.eye(T, dtype=bool)[-1])])
    ds = generate.named_dataset("ant", str(tmp_path / "ant"))
    assert len(ds) == T and ds.state_dim == 27 and "105" in ds.meta["state_columns"]
    _check_views(ds, state, action)
    assert np.allclose(ds.next_observations[0], state[1])
