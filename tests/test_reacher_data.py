"""Reacher conventions, mis-coordination measure and the expert-mix dataset (issue 8)."""
import numpy as np
import pytest
import torch

from momawb import conventions as C
from momawb.config import section_class
from momawb.domains import make
from momawb.domains.reacher import CCW, CW
from momawb.generate import NAMED_DATASETS, named_dataset
from momawb.generate.reacher import (MIRROR_STATE, MirroredTeam, ReacherDatasetConfig, reacher_dataset,
                                     reacher_dataset_config, reacher_rollouts, shaped_reacher_domain)

T = 50


# ------------------------------------------------------------------ mis-coordination measure
def test_tip_accelerations_geometry():
    """Straight arm along +x: a positive shoulder torque pushes the tip towards +y; the
    contributions are linear in each agent's torque and zero for an idle agent."""
    q = np.zeros((1, 4))
    c = C.tip_accelerations(q, [[1.0, 0.0]])
    assert c[0, 0, 1] > 0 and abs(c[0, 0, 0]) < 1e-9 and np.allclose(c[0, 1], 0)
    c2 = C.tip_accelerations(q, [[0.5, -0.3]])
    c1 = C.tip_accelerations(q, [[1.0, 1.0]])
    np.testing.assert_allclose(c2[0, 0], 0.5 * c1[0, 0], atol=1e-9)
    np.testing.assert_allclose(c2[0, 1], -0.3 * c1[0, 1], atol=1e-9)


def test_fighting_on_hand_made_torques():
    rng = np.random.default_rng(0)
    q = np.zeros((40, 4))
    q[:, :2] = rng.uniform(-2.5, 2.5, (40, 2))
    u = rng.uniform(0.2, 1.0, (40, 2)) * rng.choice([-1, 1], (40, 2))
    f = C.fighting(q, u)
    # flipping one agent's torque flips fighting; flipping both keeps it (bilinear in torques)
    np.testing.assert_array_equal(C.fighting(q, u * [1, -1]), ~f)
    np.testing.assert_array_equal(C.fighting(q, -u), f)
    # an idle agent never fights
    assert not C.fighting(q, u * [1, 0]).any() and not C.fighting(q, u * [0.01, 1]).any()
    # straight arm: shoulder +, elbow - oppose; both + agree
    z = np.zeros((3, 4))
    assert C.fighting(z, np.tile([1.0, -1.0], (3, 1))).all()
    assert not C.fighting(z, np.tile([1.0, 1.0], (3, 1))).any()
    # an elbow held against its stop (theta_2 ~ +-3 rad, torque outwards) moves nothing: no fight
    folded = np.zeros((2, 4))
    folded[:, 1] = [3.1, -3.1]
    u = np.array([[1.0, 1.0], [1.0, -1.0]])
    assert C.blocked(folded, u)[:, 1].all() and not C.blocked(folded, -u)[:, 1].any()
    assert not C.fighting(folded, u).any()
    assert not C.blocked(folded, u)[:, 0].any()          # the shoulder has no limit


def _episode(theta2, torques, dist):
    q = np.zeros((T, 4))
    q[:, 1] = theta2
    tip = np.zeros((T, 2))
    tip[:, 0] = dist
    return q, np.broadcast_to(np.asarray(torques, float), (T, 2)), tip


def test_episode_labels_hand_made():
    lab = C.episode_label(*_episode(np.linspace(0, 1.2, T), [0.3, 0.3], 0.01))
    assert lab["label"] == CCW and lab["reached"] and lab["name"] == "ccw"
    lab = C.episode_label(*_episode(np.linspace(0, -2.0, T), [0.3, 0.3], 0.01))
    assert lab["label"] == CW
    # past pi (only qpos can tell): still CCW
    assert C.episode_label(*_episode(np.full(T, 3.3), [0.0, 0.0], 0.01))["label"] == CCW
    # torques fight all episode and the target is missed: mis-coordinated
    lab = C.episode_label(*_episode(np.zeros(T), [1.0, -1.0], 0.15))
    assert lab["fight_fraction"] == 1.0 and not lab["reached"] and lab["label"] == C.MISCOORDINATED
    # missed without fighting: merely weak, keeps its convention
    assert C.episode_label(*_episode(np.full(T, 0.8), [1.0, 1.0], 0.15))["label"] == CCW
    # the elbow flips sign in the settled window: mis-coordinated
    th = np.where(np.arange(T) % 2 == 0, 0.5, -0.5) + np.r_[np.zeros(25), np.full(25, 0.1)]
    assert C.episode_label(*_episode(th, [0.2, 0.2], 0.01))["label"] == C.MISCOORDINATED
    assert C.episode_label(*_episode(np.full(T, 0.01), [0.2, 0.2], 0.01))["label"] == C.STRAIGHT


def test_unwrapped_elbow_matches_qpos_past_pi():
    th = np.linspace(0, 3.4, T)
    s = np.zeros((T, 10))
    s[:, 1], s[:, 3] = np.cos(th), np.sin(th)
    np.testing.assert_allclose(C.unwrapped_elbow(s), th, atol=1e-9)


# ------------------------------------------------------------------ scripted teams
class ConstantElbow:
    """Scripted team: shoulder idle, elbow pushes with a constant torque (sign = convention)."""

    memory_length = 0

    def __init__(self, torque):
        self.torque = torque

    def act(self, obs, history=None, greedy=True):
        a = torch.zeros(obs.shape[0], 2, 1)
        a[:, 1] = self.torque
        if not greedy:
            a = a + 0.01 * torch.randn_like(a)
        return a


def test_measure_conventions_on_scripted_teams():
    d = make("reacher")
    m = C.measure_conventions(ConstantElbow(0.3), d, episodes=4)
    assert m["ccw"] == 1.0 and m["convention"] == "ccw"
    assert abs(m["ccw"] + m["cw"] + m["miscoordinated"] + m["straight"] - 1) < 1e-9
    assert C.measure_conventions(ConstantElbow(-0.3), d, episodes=4)["convention"] == "cw"


# ------------------------------------------------------------------ the expert-mix dataset
def test_config_section_and_shaping():
    assert section_class("reacher_generator") is ReacherDatasetConfig
    cfg = ReacherDatasetConfig()
    assert cfg.name == "expert-mix" and cfg.shaping == 0.0
    assert cfg.training_config(0).mode == "online"
    env = shaped_reacher_domain(1.0, -1).make_env(seed=0)
    plain = make("reacher").make_env(seed=0)
    for _ in range(5):
        act = {"agent_0": np.array([0.0], np.float32), "agent_1": np.array([-0.5], np.float32)}
        _, r, *_ = env.step(act)
        _, r0, *_ = plain.step(act)
    assert r["agent_0"] > r0["agent_0"]      # bending CW is rewarded when sign = -1


def test_expert_mix_generation_with_injected_teams(tmp_path):
    cfg = ReacherDatasetConfig(episodes_per_team=6, random_episodes=4, convention_episodes=3)
    teams = {"ccw": ConstantElbow(0.3), "cw": ConstantElbow(-0.3)}
    ds = reacher_dataset(cfg, root=tmp_path, teams=teams, log=None)
    assert len(ds) == 12 * T and len(ds.episode_bounds()) == 12
    assert ds.qpos.shape == (12 * T, 4) and ds.qvel.shape == (12 * T, 4)
    labels = [x["label"] for x in C.dataset_labels(ds)]
    assert labels.count(CCW) == 6 and labels.count(CW) == 6
    m = ds.meta
    assert m["reference_returns"]["random"] == -11.145 and m["reference_returns"]["expert"] == -4.237
    assert {"random", "expert", "zero_torque"} <= set(m["measured_reference_returns"])
    assert m["source_teams"]["ccw"]["convention"] == "ccw" and m["versions"]["mujoco"]
    assert m["generator_config"]["episodes_per_team"] == 6
    d = ds.describe(make("reacher"))
    assert {"score_min", "score_mean", "score_median", "score_max"} <= set(d)
    # the file: D4RL keys, infos/qpos, cached (second call loads the same file)
    import h5py
    files = list((tmp_path / "datasets").glob("reacher-expert-mix-*.hdf5"))
    assert len(files) == 1
    with h5py.File(files[0]) as f:
        assert {"observations", "actions", "rewards", "next_observations", "terminals", "timeouts"} <= set(f)
        assert "qpos" in f["infos"] and "qvel" in f["infos"]
    mtime = files[0].stat().st_mtime_ns
    again = reacher_dataset(cfg, root=tmp_path, teams={"ccw": None, "cw": None}, log=None)
    assert files[0].stat().st_mtime_ns == mtime and again.source == str(files[0])
    np.testing.assert_array_equal(again.qpos, ds.qpos.astype(again.qpos.dtype))
    # stored qpos/qvel restart the simulator exactly
    sim = make("reacher").simulator()
    i = np.arange(0, len(ds), 37)
    out = sim.step(ds.observations[i], ds.actions[i], ds.qpos[i], ds.qvel[i])
    np.testing.assert_allclose(out.next_states, ds.next_observations[i], atol=1e-5)
    np.testing.assert_allclose(out.rewards, ds.rewards[i], atol=1e-5)


def test_rollouts_reproducible_and_random_reference():
    a = reacher_rollouts(ConstantElbow(0.3), 2, seed=3, stochastic=True)
    b = reacher_rollouts(ConstantElbow(0.3), 2, seed=3, stochastic=True)
    np.testing.assert_array_equal(a["actions"], b["actions"])
    r = reacher_rollouts(None, 3, seed=0, random_policy=True)
    assert np.abs(r["actions"]).max() <= 1 and r["episode_returns"].mean() < -20   # ctrl cost ~ -33


def test_named_dataset_reacher(tmp_path, monkeypatch):
    assert "reacher" in NAMED_DATASETS
    with pytest.raises(ValueError, match="unknown reacher dataset"):
        named_dataset("reacher", "nope", root=tmp_path)
    seen = {}

    def fake(config, root=None, teams=None, progress=False, log=print, workers=1):
        seen["config"], seen["workers"] = config, workers
        return "ok"

    monkeypatch.setattr("momawb.generate.reacher.reacher_dataset", fake)
    # the registry resolves through the module attribute at call time
    assert named_dataset("reacher", "expert-mix", root=tmp_path) == "ok"
    assert seen["config"] == reacher_dataset_config("expert-mix")
    named_dataset("reacher", "expert-mix", root=tmp_path, seed=3)
    assert seen["config"].seed == 3 and seen["config"].mirror_fallback
    named_dataset("reacher", "expert-mix", root=tmp_path, expert_steps=7)     # a preset's generator keys
    assert seen["config"].expert_steps == 7 and seen["config"].mirror_fallback and seen["workers"] == 1
    named_dataset("reacher", "expert-mix", root=tmp_path, workers=2)           # the sweep's pool size
    assert seen["workers"] == 2 and seen["config"] == reacher_dataset_config("expert-mix")


def test_expert_seeds_trained_at_once_are_the_ones_trained_in_turn(tmp_path, monkeypatch):
    """workers=2 trains seeds 0 and 1 in two processes; the teams, their measured conventions
    and the seeds kept are those of training them one after the other."""
    from momawb.generate import reacher as gen
    monkeypatch.setattr(gen, "_with_mirror", lambda config, best, infos, log: (best, infos))  # tiny teams: no expert
    config = reacher_dataset_config("expert-mix", expert_steps=2, max_seeds=2, convention_episodes=3,
                                    expert_hidden=(16,), expert_overrides={**gen.REACHER_EXPERT_STABILISERS,
                                                                           "transitions_per_update": 100})
    out = {}
    for workers in (1, 2):
        best, infos = gen.reacher_experts(config, tmp_path / str(workers), log=None, workers=workers)
        assert [i["seed"] for i in infos] == [0, 1]
        teams = [gen.train_reacher_expert(config, s, tmp_path / str(workers))[0] for s in (0, 1)]
        out[workers] = ([{k: v for k, v in i.items() if k not in ("run_dir", "train_wall_s")} for i in infos],
                        [[p.detach().clone() for p in t.parameters()] for t in teams])
    assert out[1][0] == out[2][0]
    for a, b in zip(out[1][1], out[2][1]):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_mirror_symmetry_is_exact_in_the_simulator():
    """Reflecting the state about the x axis and negating the torques mirrors the next state and
    keeps the reward: the basis of `MirroredTeam`."""
    r = reacher_rollouts(None, 2, seed=1, random_policy=True)
    sim = make("reacher").simulator()
    i = np.arange(0, len(r["states"]), 7)
    s, a = r["states"][i], r["actions"][i]
    out = sim.step(s, a)
    mir = sim.step(s * MIRROR_STATE, -a)
    np.testing.assert_allclose(mir.next_states, out.next_states * MIRROR_STATE, atol=1e-9)
    np.testing.assert_allclose(mir.rewards, out.rewards, atol=1e-12)
    d = make("reacher")
    assert C.measure_conventions(MirroredTeam(ConstantElbow(0.3)), d, episodes=3)["convention"] == "cw"
