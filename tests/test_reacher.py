"""Two-agent Reacher: the module docstring is the spec; these tests hold it to the code."""
import os
import re

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

import momawb.domains.reacher as R
from momawb.domains import make

SETTINGS = ("fo", "independent", "leader")


def random_episode(env, seed, steps=None, scale=1.0):
    """(states s_t, sim states, actions, (obs, rewards, infos), next states) along one episode."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    rows = []
    for _ in range(steps or env.episode_length):
        s, (qpos, qvel) = env.state(), env.sim_state()
        a = rng.uniform(-scale, scale, (2, 1))
        obs, rew, term, trunc, info = env.step({"agent_0": a[0], "agent_1": a[1]})
        rows.append((s, qpos, qvel, a, obs, rew, info, env.state(), term, trunc))
    return rows


@pytest.mark.parametrize("setting", SETTINGS)
def test_parallel_api(setting):
    parallel_api_test(R.TwoAgentReacherEnv(setting), num_cycles=60)


@pytest.mark.filterwarnings("ignore:.*Box observation space m")
def test_gymnasium_env_underneath():
    from gymnasium.utils.env_checker import check_env
    check_env(gym.make(R.GYM_ID).unwrapped, skip_render_check=True)


def test_actuator_map_from_the_model():
    env = R.TwoAgentReacherEnv()
    m = env.reacher.model
    joints = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in m.actuator_trnid[:, 0]]
    assert joints == ["joint0", "joint1"] and list(R.actuator_of_agents(m)) == [0, 1]
    # the docstring's agent table: agent, joint, actuator
    table = re.findall(r"^(agent_\d)\s+(joint\d)\s+(\d)\s", R.__doc__, re.M)
    assert [(a, j, int(k)) for a, j, k in table] == [("agent_0", "joint0", 0), ("agent_1", "joint1", 1)]
    # behaviour: each agent's torque reaches its own joint only (gear 200)
    for i, agent in enumerate(env.possible_agents):
        env.reset(seed=0)
        env.step({a: np.array([1.0 if a == agent else 0.0], np.float32) for a in env.possible_agents})
        expected = np.zeros(4)
        expected[m.jnt_dofadr[m.joint(R.AGENT_JOINTS[i]).id]] = 200.0
        np.testing.assert_allclose(env.reacher.data.qfrc_actuator, expected)


def test_state_is_reacher_v5_observation_in_documented_order():
    env = R.TwoAgentReacherEnv()
    obs, _ = env.reset(seed=3)
    plain = gym.make(R.GYM_ID)
    ref, _ = plain.reset(seed=3)
    np.testing.assert_array_equal(env.state(), ref)
    for t in range(5):
        a = np.array([0.3, -0.7]) * (t + 1) / 5
        _, r, *_ = env.step({"agent_0": a[:1], "agent_1": a[1:]})
        ref, r_ref, *_ = plain.step(a)
        np.testing.assert_array_equal(env.state(), ref)
        assert r["agent_0"] == r_ref
    d, s = env.reacher.data, env.state()
    tip = (d.body("fingertip").xpos - d.body("target").xpos)[:2]
    manual = np.concatenate([np.cos(d.qpos[:2]), np.sin(d.qpos[:2]), d.qpos[2:], d.qvel[:2], tip])
    np.testing.assert_array_equal(s, manual)
    assert R.STATE_LABELS[4:6] == ("target x", "target y")
    np.testing.assert_allclose(d.body("target").xpos[:2], d.qpos[2:4], atol=1e-12)  # target = qpos[2:4]


def test_observation_index_per_setting():
    expected = {
        "fo": [list(range(10)), list(range(10))],
        "independent": [[0, 2, 6, 4, 5], [1, 3, 7, 4, 5]],
        "leader": [[0, 1, 2, 3, 6, 7, 4, 5], [0, 1, 2, 3, 6, 7, -1, -1]],
    }
    doc = {}
    for setting, agent, idx in re.findall(r"^(fo|independent|leader)\s+(agent_\d)\s+((?:-?\d+ )+)", R.__doc__, re.M):
        doc.setdefault(setting, []).append([int(v) for v in idx.split()])
    for setting in SETTINGS:
        d = make("reacher", observation=setting)
        assert d.name == "reacher" and d.task == setting
        assert d.obs_index.tolist() == expected[setting] == doc[setting], setting
    lab = lambda setting, i: {R.STATE_LABELS[j] for j in expected[setting][i] if j >= 0}  # noqa: E731
    tip = {"fingertip-target x", "fingertip-target y"}
    target = {"target x", "target y"}
    assert lab("fo", 0) == lab("fo", 1) == set(R.STATE_LABELS)
    assert lab("independent", 0) == {"cos theta_1", "sin theta_1", "theta_1 dot"} | target
    assert lab("independent", 1) == {"cos theta_2", "sin theta_2", "theta_2 dot"} | target
    assert lab("leader", 0) == set(R.STATE_LABELS) - tip
    assert lab("leader", 1) == set(R.STATE_LABELS) - tip - target
    assert make("reacher", observation="leader-only").task == "leader"
    with pytest.raises(ValueError, match="independent"):
        make("reacher", observation="partial")


@pytest.mark.parametrize("setting", SETTINGS)
def test_env_observations_equal_domain_observe(setting):
    d = make("reacher", observation=setting)
    env = d.make_env()
    obs, _ = env.reset(seed=1)
    for t in range(3):
        full = d.observe(env.state())                       # (N, obs_dim), zero-padded
        for i, a in enumerate(env.possible_agents):
            n = d.obs_dims[i]
            assert env.observation_space(a).shape == (n,)
            np.testing.assert_array_equal(obs[a], full[i, :n])
            assert not full[i, n:].any()
        obs, *_ = env.step({a: np.array([0.5], np.float32) for a in env.agents})


def test_domain_spec_matches_docstring():
    d = make("reacher")
    assert (d.n_agents, d.state_dim, d.act_dim, d.n_actions, d.episode_length) == (2, 10, 1, None, 50)
    assert d.reference_returns == (-11.145, -4.237)
    assert "random -11.145, expert -4.237" in R.__doc__ and "``episode_length`` = 50 steps" in R.__doc__
    assert d.normalize([-11.145, -4.237]).tolist() == [0.0, 1.0]
    plain = gym.make(R.GYM_ID).unwrapped                   # docstring: both weights are 1, dt 0.02
    assert (plain._reward_dist_weight, plain._reward_control_weight) == (1, 1)
    assert plain.dt == pytest.approx(0.02) and plain.frame_skip == 2


def test_episode_truncates_never_terminates_and_reward_terms_sum():
    env = R.TwoAgentReacherEnv(episode_length=50)
    rows = random_episode(env, seed=2, scale=1.5)
    assert len(rows) == 50 and env.agents == []
    for t, (*_, rew, info, _, term, trunc) in enumerate(rows):
        assert not any(term.values()) and all(v == (t == 49) for v in trunc.values())
        for a in ("agent_0", "agent_1"):
            assert set(info[a]) == {"reward_dist", "reward_ctrl"}
            assert info[a]["reward_dist"] + info[a]["reward_ctrl"] == pytest.approx(rew[a], abs=1e-12)
    # control cost is paid on the action as given (1.5 is outside [-1, 1])
    s, qpos, qvel, a, *_ = rows[0]
    assert rows[0][6]["agent_0"]["reward_ctrl"] == pytest.approx(-np.square(a).sum())
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"agent_0": [0.0], "agent_1": [0.0]})


def test_simulator_restarts_from_qpos_qvel():
    d = make("reacher")
    env, sim = d.make_env(), d.simulator()
    rows = random_episode(env, seed=4) + random_episode(env, seed=5, scale=2.0)
    states, qpos, qvel, acts = (np.stack([r[k] for r in rows]) for k in range(4))
    nxt = np.stack([r[7] for r in rows])
    rewards = np.array([r[5]["agent_0"] for r in rows])
    out = sim.step(states, acts, qpos, qvel)
    np.testing.assert_allclose(out.next_states, nxt, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out.rewards, rewards, rtol=0, atol=1e-9)
    assert out.next_states.shape == (100, 10) and out.terminals.shape == (100,) and not out.terminals.any()
    # the stored qpos/qvel of s_{t+1} are the simulator's output for s_t (within an episode)
    np.testing.assert_allclose(out.qpos[:49], qpos[1:50], rtol=0, atol=1e-9)
    np.testing.assert_allclose(out.qvel[:49], qvel[1:50], rtol=0, atol=1e-9)
    # batch order does not matter; without qpos/qvel the state itself is enough (|theta_2| < pi)
    perm = np.random.default_rng(0).permutation(len(states))
    np.testing.assert_array_equal(sim.step(states[perm], acts[perm], qpos[perm], qvel[perm]).next_states,
                                  out.next_states[perm])
    ok = np.abs(qpos[:, 1]) < 3.0
    np.testing.assert_allclose(sim.step(states[ok], acts[ok]).next_states, nxt[ok], rtol=0, atol=1e-7)


def test_elbow_convention_sign_from_the_model():
    env = R.TwoAgentReacherEnv()
    m, data = env.reacher.model, env.reacher.data
    assert m.jnt_axis[m.joint("joint1").id].tolist() == [0, 0, 1]
    rng = np.random.default_rng(0)
    qpos = np.column_stack([rng.uniform(-np.pi, np.pi, 64), rng.uniform(-3, 3, 64), np.zeros((64, 2))])
    qpos[0, 1] = 0.0
    states = []
    for q in qpos:
        env.reacher.set_state(q, np.zeros(4))
        shoulder, elbow, tip = (data.body(b).xpos[:2] for b in ("body0", "body1", "fingertip"))
        u, v = elbow - shoulder, tip - elbow
        cross = u[0] * v[1] - u[1] * v[0]                  # > 0: forearm turned counter-clockwise
        assert R.elbow_convention(q[None])[0] == np.sign(np.round(cross, 12))
        states.append(env.reacher._get_obs())
    np.testing.assert_array_equal(R.elbow_convention(np.array(states)), R.elbow_convention(qpos))
    assert R.elbow_convention(qpos)[0] == 0 and set(R.elbow_convention(qpos)[1:]) == {R.CCW, R.CW}
    np.testing.assert_allclose(R.elbow_angle(np.array(states)), qpos[:, 1], atol=1e-12)


def test_render_rgb_frame():
    env = R.TwoAgentReacherEnv(render_mode="rgb_array", width=64, height=48)
    env.reset(seed=0)
    env.step({"agent_0": [0.2], "agent_1": [-0.2]})
    try:
        frame = env.render()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no headless OpenGL backend (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): {e}")
    finally:
        env.close()
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8 and frame.std() > 0


def test_evaluate_runs_episodes_of_the_domain():
    import torch

    from momawb.evaluation import evaluate

    class Still:
        memory_length = 0

        def act(self, obs, history, greedy=True):
            return torch.zeros(obs.shape[0], 2, 1)

    d = make("reacher", observation="independent")
    res = evaluate(Still(), d, episodes=2, seed=7)
    assert res.lengths.tolist() == [50, 50]
    env = d.make_env()
    env.reset(seed=7)
    manual = sum(env.step({"agent_0": [0.0], "agent_1": [0.0]})[1]["agent_0"] for _ in range(50))
    assert res.returns[0] == pytest.approx(manual)


def test_joint_view_is_one_agent_acting_on_the_joint_action():
    """domains.joint: one agent sees the global state and sends the joint action; the episode,
    rewards and dataset views are the two-agent env's."""
    from momawb.datasets import Dataset
    from momawb.domains.joint import joint
    two = make("reacher", observation="independent")
    one = joint(two)
    assert (one.n_agents, one.obs_dim, one.act_dim, one.task) == (1, two.state_dim, 2, "independent-joint")
    a, b = two.make_env(seed=3), one.make_env(seed=3)
    rng = np.random.default_rng(0)
    for t in range(two.episode_length):
        act = rng.uniform(-1, 1, 2).astype(np.float32)
        np.testing.assert_array_equal(one.observe(b.state())[0], a.state())
        _, r2, _, tr2, _ = a.step({"agent_0": act[:1], "agent_1": act[1:]})
        _, r1, _, tr1, _ = b.step({"agent_0": act})
        assert r1["agent_0"] == r2["agent_0"] and tr1["agent_0"] == tr2["agent_0"]
    assert b.agents == [] and tr1["agent_0"]
    s = rng.standard_normal((4, two.state_dim)).astype(np.float32)
    ds = Dataset(s, rng.uniform(-1, 1, (4, 2)), np.zeros(4), s, np.zeros(4, bool), np.array([0, 0, 0, 1], bool))
    views = ds.agent_views(one)
    np.testing.assert_array_equal(views.obs[:, 0], s)
    np.testing.assert_array_equal(views.actions[:, 0], ds.actions)
    with pytest.raises(ValueError, match="continuous"):
        joint(make("game"))
