"""Four-agent Ant: the module docstring is the spec; these tests hold it to the code and the model."""
import os
import re

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test

import momawb.domains.ant as A
from momawb.domains import Domain, make
from momawb.domains.ant_render import GROUP_RGBA, HIGHLIGHT_RGBA

SETTINGS = ("fo", "po")
AGENTS = [f"agent_{i}" for i in range(4)]


def model():
    return gym.make(A.GYM_ID, **A.GYM_KWARGS).unwrapped.model


def joint_name(m, j):
    return mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, int(j))


def qpos_joint(m, adr):
    """The hinge joint whose qpos address is ``adr``."""
    return joint_name(m, np.flatnonzero(m.jnt_qposadr == adr)[0])


def dof_joint(m, adr):
    return joint_name(m, np.flatnonzero(m.jnt_dofadr == adr)[0])


def random_steps(env, seed, steps, scale=1.0):
    """(states, qpos, qvel, actions (T, 4, 2), rewards, next states, terminals), resetting as needed."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    rows = []
    for _ in range(steps):
        if not env.agents:
            env.reset()
        s, (q, v) = env.state(), env.sim_state()
        a = rng.uniform(-scale, scale, (4, 2))
        _, rew, term, *_ = env.step(dict(zip(AGENTS, a)))
        rows.append((s, q, v, a, rew["agent_0"], env.state(), term["agent_0"]))
    return [np.array(x) for x in zip(*rows)]


@pytest.mark.parametrize("setting", SETTINGS)
def test_parallel_api(setting):
    parallel_api_test(A.AntMultiAgentEnv(setting), num_cycles=60)


def test_actuator_map_from_the_model():
    m = model()
    drives = [joint_name(m, j) for j in m.actuator_trnid[:, 0]]
    assert drives == ["hip_4", "ankle_4", "hip_1", "ankle_1", "hip_2", "ankle_2", "hip_3", "ankle_3"]
    act = A.actuators_of_agents(m)
    assert act.tolist() == [[2, 3], [4, 5], [6, 7], [0, 1]]
    assert make("ant").action_index.tolist() == act.tolist()
    table = re.findall(r"^(agent_\d)\s+(hip_\d)\s+(ankle_\d)\s+(\d) (\d)\s", A.__doc__, re.M)
    assert [(a, h, k, [int(x), int(y)]) for a, h, k, x, y in table] == [
        (a, h, k, act[i].tolist()) for i, (a, (h, k)) in enumerate(zip(AGENTS, A.AGENT_LEGS))]
    # every agent observes (po: first four slots) the joints its actuators drive
    d = make("ant", observation="po")
    for i in range(4):
        row = d.obs_index[i]
        seen_angles = [qpos_joint(m, row[j] + 2) for j in (0, 1)]         # state k = qpos[k + 2]
        seen_speeds = [dof_joint(m, row[j] - 13) for j in (2, 3)]         # state 13 + k = qvel[k]
        driven = [drives[c] for c in d.action_index[i]]
        assert seen_angles == seen_speeds == driven == list(A.AGENT_LEGS[i]), i
    # behaviour: an agent's torques reach its own two joints only (gear 150)
    env = A.AntMultiAgentEnv()
    for i, agent in enumerate(AGENTS):
        env.reset(seed=0)
        env.step({a: np.full(2, 1.0 if a == agent else 0.0, np.float32) for a in AGENTS})
        expected = np.zeros(m.nv)
        expected[[m.jnt_dofadr[m.joint(j).id] for j in A.AGENT_LEGS[i]]] = 150.0
        np.testing.assert_allclose(env.ant.data.qfrc_actuator, expected)


def test_state_is_ant_v5_observation_and_reward():
    m = model()
    for j in sum(A.AGENT_LEGS, ()):                    # the state labels follow the model's addresses
        assert A.STATE_LABELS[m.jnt_qposadr[m.joint(j).id] - 2] == f"{j} angle"
        assert A.STATE_LABELS[13 + m.jnt_dofadr[m.joint(j).id]] == f"{j} velocity"
    d = make("ant")
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, (40, 4, 2))
    for forward_from in ("xpos", "qpos"):
        env, plain = A.AntMultiAgentEnv(forward_from=forward_from), gym.make(A.GYM_ID, **A.GYM_KWARGS)
        env.reset(seed=3)
        ref, _ = plain.reset(seed=3)
        np.testing.assert_array_equal(env.state(), ref)
        for t, a in enumerate(acts):
            x_left = plain.unwrapped.data.body("torso").xpos[0]     # what the previous mj_step left
            x_state = env.sim_state()[0][0]                          # the torso x of s_t
            _, r, term, _, info = env.step(dict(zip(AGENTS, a)))
            ref, r_ref, term_ref, _, info_ref = plain.step(d.join_actions(a))   # the joint action, actuator order
            np.testing.assert_array_equal(env.state(), ref)
            assert term["agent_0"] == term_ref
            terms = ("reward_forward", "reward_ctrl", "reward_contact", "reward_survive")
            assert sum(info["agent_1"][k] for k in terms) == pytest.approx(r["agent_1"], abs=1e-12)
            if forward_from == "xpos":                 # Ant-v5 bit for bit
                assert r["agent_0"] == r_ref and info["agent_0"] == pytest.approx(info_ref, abs=0)
            else:                                      # only x_before differs: the state's, not the one left
                assert r["agent_0"] - r_ref == pytest.approx((x_left - x_state) / env.ant.dt, abs=1e-9)
                assert (r["agent_0"] != r_ref) == (t > 0)     # the first step after a reset is Ant-v5's
                for k in ("reward_ctrl", "reward_contact", "reward_survive"):
                    assert info["agent_0"][k] == info_ref[k]
            if term_ref:
                break
    assert env.ant._forward_reward_weight == 1 and env.ant._ctrl_cost_weight == 0.5
    assert env.ant._contact_cost_weight == 5e-4 and env.ant._healthy_z_range == (0.2, 1.0)
    assert env.ant.dt == pytest.approx(0.05) and env.ant.frame_skip == 5


def test_observation_index_per_setting():
    expected = {"fo": [list(range(27))] * 4,
                "po": [[5, 6, 19, 20, 0, 1, 2, 3, 4, 13, 14, 15, 16, 17, 18], [7, 8, 21, 22] + [-1] * 11,
                       [9, 10, 23, 24] + [-1] * 11, [11, 12, 25, 26] + [-1] * 11]}
    doc = [[int(v) for v in idx.split()] for idx in re.findall(r"^po\s+agent_\d\s+((?:\d+ )+)", A.__doc__, re.M)]
    assert [r + [-1] * (15 - len(r)) for r in doc] == expected["po"]
    for setting in SETTINGS:
        d = make("ant", observation=setting)
        assert (d.name, d.task) == ("ant", setting) and d.obs_index.tolist() == expected[setting]
    labels = make("ant", observation="po").info["obs_labels"]
    torso = {"torso z", "torso qw", "torso qx", "torso qy", "torso qz", "torso vx", "torso vy", "torso vz",
             "torso wx", "torso wy", "torso wz"}
    for i, (hip, ankle) in enumerate(A.AGENT_LEGS):
        assert labels[i][:4] == [f"{hip} angle", f"{ankle} angle", f"{hip} velocity", f"{ankle} velocity"]
    assert set(labels[0][4:]) == torso and all(len(r) == 4 for r in labels[1:])
    assert make("ant", observation="po").info["torso_agent"] == A.TORSO_AGENT == "agent_0"
    assert make("ant").info["torso_agent"] is None
    assert make("ant", observation="t4x2_0").task == "po" and make("ant", observation="4x2_full").task == "fo"
    with pytest.raises(ValueError, match="fo, po"):
        make("ant", observation="partial")


@pytest.mark.parametrize("setting", SETTINGS)
def test_agent_observations_of_a_real_state(setting):
    d = make("ant", observation=setting)
    env = d.make_env()
    m = env.ant.model
    obs, _ = env.reset(seed=1)
    for _ in range(3):
        obs, *_ = env.step({a: np.array([0.4, -0.3], np.float32) for a in env.agents})
    q, v = env.sim_state()
    full = d.observe(env.state())
    for i, a in enumerate(AGENTS):
        n = d.obs_dims[i]
        assert env.observation_space(a).shape == (n,)
        np.testing.assert_array_equal(obs[a], full[i, :n])
        assert not full[i, n:].any()
        if setting == "fo":
            np.testing.assert_array_equal(obs[a], np.concatenate([q[2:], v]))
            continue
        hip, ankle = (m.joint(j).id for j in A.AGENT_LEGS[i])
        own = [q[m.jnt_qposadr[hip]], q[m.jnt_qposadr[ankle]], v[m.jnt_dofadr[hip]], v[m.jnt_dofadr[ankle]]]
        np.testing.assert_array_equal(obs[a][:4], own)
        if a == A.TORSO_AGENT:
            np.testing.assert_array_equal(obs[a][4:], np.concatenate([q[2:7], v[0:3], v[3:6]]))
        else:
            assert n == 4


def test_action_permutation_split_join():
    d, rng = make("ant"), np.random.default_rng(0)
    joint = rng.standard_normal((5, 3, 8))
    per = d.split_actions(joint)
    assert per.shape == (5, 3, 4, 2)
    np.testing.assert_array_equal(d.join_actions(per), joint)
    np.testing.assert_array_equal(d.split_actions(d.join_actions(per)), per)
    m = model()
    drives = [joint_name(m, j) for j in m.actuator_trnid[:, 0]]
    for i, leg in enumerate(A.AGENT_LEGS):           # agent i's actions are the controls of its own leg
        np.testing.assert_array_equal(per[..., i, :], joint[..., [drives.index(j) for j in leg]])
    t = torch.as_tensor(joint)
    assert torch.equal(d.split_actions(t), torch.as_tensor(per))
    assert torch.equal(d.join_actions(d.split_actions(t)), t)
    assert torch.equal(d.encode_actions(torch.as_tensor(per)), t)
    # game and Reacher keep the agent-major reshape
    for other in (make("game"), make("reacher")):
        x = np.arange(2 * other.joint_action_dim).reshape(2, -1)
        np.testing.assert_array_equal(other.split_actions(x), x.reshape(2, other.n_agents, other.act_dim))
    with pytest.raises(ValueError, match="permutation"):
        Domain("x", "y", 2, 3, np.zeros((2, 1)), 2, None, 10, (0, 1), action_index=[[0, 1], [1, 2]])


def test_restart_from_qpos_qvel():
    env, other = A.AntMultiAgentEnv(), A.AntMultiAgentEnv()
    rng = np.random.default_rng(5)
    env.reset(seed=5)
    for _ in range(7):
        env.step(dict(zip(AGENTS, rng.uniform(-1, 1, (4, 2)))))
    q, v = env.sim_state()
    obs, _ = other.reset(seed=9, options={"qpos": q, "qvel": v})
    np.testing.assert_array_equal(other.state(), env.state())
    for _ in range(5):
        a = dict(zip(AGENTS, rng.uniform(-1, 1, (4, 2))))
        _, r1, t1, *_ = env.step(a)
        _, r2, t2, *_ = other.step(a)
        np.testing.assert_allclose(other.state(), env.state(), rtol=0, atol=1e-10)
        assert r2["agent_0"] == pytest.approx(r1["agent_0"], abs=1e-10) and t1 == t2
    with pytest.raises(ValueError, match="qpos"):
        other.reset(options={"qpos": q[:-1], "qvel": v})
    with pytest.raises(ValueError, match="state"):
        A.AntMultiAgentEnv(include_cfrc_ext_in_observation=True)


def test_simulator_matches_the_env_including_termination():
    d = make("ant")
    env, sim = d.make_env(), d.simulator()
    s, q, v, a, r, nxt, term = random_steps(env, seed=4, steps=150)
    # a constructed terminal step: the torso thrown upwards leaves the healthy range (z > 1)
    env.reset(seed=0)
    q_up, v_up = env.sim_state()
    q_up[2], v_up[2] = 0.95, 6.0
    env.reset(options={"qpos": q_up, "qvel": v_up})
    s_up, a_up = env.state(), np.full((4, 2), 0.3)
    _, r_up, t_up, tr_up, info = env.step(dict(zip(AGENTS, a_up)))
    assert t_up["agent_0"] and not tr_up["agent_0"] and env.agents == [] and info["agent_0"]["reward_survive"] == 0
    s, q, v, a = np.r_[s, [s_up]], np.r_[q, [q_up]], np.r_[v, [v_up]], np.r_[a, [a_up]]
    r, nxt, term = np.r_[r, r_up["agent_0"]], np.r_[nxt, [env.state()]], np.r_[term, True]
    out = sim.step(s, a, q, v)
    np.testing.assert_allclose(out.next_states, nxt, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out.rewards, r, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(out.terminals, term)
    assert term.sum() >= 1 and out.qpos.shape == (151, 15) and out.qvel.shape == (151, 14)
    # rows are independent of the batch order
    perm = np.random.default_rng(0).permutation(len(s))
    np.testing.assert_array_equal(sim.step(s[perm], a[perm], q[perm], v[perm]).next_states, out.next_states[perm])
    # without qpos/qvel: rebuilt at x = y = 0, the same up to rounding (dynamics ignore x, y)
    flat = sim.step(s, a)
    np.testing.assert_allclose(flat.next_states, nxt, rtol=0, atol=1e-9)
    np.testing.assert_allclose(flat.rewards, r, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(flat.terminals, term)
    np.testing.assert_allclose(flat.qpos[:, :2], out.qpos[:, :2] - q[:, :2], atol=1e-9)
    with pytest.raises(ValueError, match="split_actions"):
        sim.step(s, d.join_actions(a), q, v)


def test_episode_timeout_and_reward_terms():
    env = A.AntMultiAgentEnv(episode_length=5)
    env.reset(seed=2)
    for t in range(5):
        _, rew, term, trunc, info = env.step({a: np.zeros(2) for a in AGENTS})
        assert not any(term.values()) and all(v == (t == 4) for v in trunc.values())
        assert len(set(rew.values())) == 1 and info["agent_0"]["reward_survive"] == 1.0
    assert env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step({a: np.zeros(2) for a in AGENTS})


def test_foot_contacts_from_the_contact_list():
    env = A.AntMultiAgentEnv()
    env.reset(seed=0)
    qs = []
    for _ in range(60):                                  # falls from z ~0.55, then stands on four feet
        env.step({a: np.zeros(2) for a in AGENTS})
        qs.append(env.sim_state()[0])
    assert env.foot_contacts().tolist() == [True] * 4
    lifted = qs[-1].copy()
    lifted[2] += 1.0
    assert A.foot_contacts(lifted).tolist() == [False] * 4
    # along a random walk, the contact list agrees with geometry: a foot capsule's lowest point
    # is within the 2 cm contact margin of the floor
    _, q, *_ = random_steps(env, seed=1, steps=80, scale=0.6)
    contacts = A.foot_contacts(q)
    assert contacts.shape == (80, 4) and contacts.any() and not contacts.all()
    m, data = env.ant.model, mujoco.MjData(env.ant.model)
    feet = [m.geom(g).id for g in ("left_ankle_geom", "right_ankle_geom", "third_ankle_geom", "fourth_ankle_geom")]
    for t in range(len(q)):
        data.qpos[:] = q[t]
        mujoco.mj_kinematics(m, data)
        for i, g in enumerate(feet):
            radius, half = m.geom_size[g, :2]
            ends = data.geom_xpos[g, 2] + np.array([-1, 1]) * half * data.geom_xmat[g].reshape(3, 3)[2, 2]
            gap = ends.min() - radius
            if abs(gap - 0.02) > 1e-4:
                assert contacts[t, i] == (gap < 0.02), (t, i, gap)


def test_state_from_observations_layouts():
    plain = gym.make(A.GYM_ID)                           # Gymnasium/Minari Ant-v5: 105-d with cfrc_ext
    ob105, _ = plain.reset(seed=0)
    ob105, *_ = plain.step(np.full(8, 0.2))
    q, v = plain.unwrapped.data.qpos, plain.unwrapped.data.qvel
    np.testing.assert_array_equal(A.state_from_observations(ob105[None]), np.concatenate([q[2:], v])[None])
    d4rl = np.concatenate([q[2:], v, np.random.default_rng(0).uniform(-1, 1, 84)])   # gym Ant-v2 layout
    np.testing.assert_array_equal(A.state_from_observations(np.stack([d4rl, d4rl])), np.stack([ob105[:27]] * 2))
    s27 = np.ones((3, 27), np.float32)
    assert A.state_from_observations(s27).dtype == np.float32
    np.testing.assert_array_equal(A.state_from_observations(s27), s27)
    with pytest.raises(ValueError, match="got width 29.*"):
        A.state_from_observations(np.zeros((4, 29)))


def test_domain_spec():
    d = make("ant")
    assert (d.n_agents, d.state_dim, d.act_dim, d.n_actions, d.episode_length) == (4, 27, 2, None, 1000)
    assert d.reference_returns == A.D4RL_REFERENCE_RETURNS == (-325.6, 3879.7)
    assert "random\n-325.6, expert 3879.7" in A.__doc__ or "random -325.6, expert 3879.7" in A.__doc__
    assert make("ant", reference_returns=(0, 100)).normalize(50) == 0.5
    assert d.info["agent_legs"] == dict(zip(AGENTS, A.AGENT_LEGS)) and d.info["gym_id"] == "Ant-v5"
    assert len(A.STATE_LABELS) == A.STATE_DIM == 27 and d.has_simulator
    env = make("ant", episode_length=7).make_env(seed=0)
    assert env.episode_length == 7 and all(env.action_space(a).shape == (2,) for a in AGENTS)


def test_frames_and_highlight_colour():
    env = A.AntMultiAgentEnv("po", render_mode="rgb_array", width=96, height=64)
    _, q, v, *_ = random_steps(env, seed=3, steps=6, scale=0.5)
    try:
        frames = A.ant_frames(q[:5], v[:5], size=(64, 96), every=2)             # states 0, 2, 4; agent 0 yellow
        plain = A.ant_frames(q[4:5], v[4:5], size=(64, 96), highlight=None)[0]
        lit = {0: frames[-1], 2: A.ant_frames(q[4:5], v[4:5], size=(64, 96), highlight=2)[0]}
        env_frame = env.render()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no headless OpenGL backend (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): {e}")
    finally:
        env.close()
    assert frames.shape == (3, 64, 96, 3) and frames.dtype == np.uint8 and frames.std() > 0
    assert env_frame.shape == (64, 96, 3)

    def hue(rgb):                                        # colour up to brightness: rgb / max channel
        x = np.asarray(rgb, float)[..., :3]
        return x / np.maximum(x.max(-1, keepdims=True), 1e-9)
    for i, frame in lit.items():
        changed = np.abs(frame.astype(int) - plain.astype(int)).sum(-1) > 30   # only leg i is recoloured
        assert changed.sum() > 20, i
        # there the highlighted frame is yellow and the plain one has leg i's own colour (shading aside)
        np.testing.assert_allclose(np.median(hue(frame[changed]), 0), hue(HIGHLIGHT_RGBA), atol=0.15)
        np.testing.assert_allclose(np.median(hue(plain[changed]), 0), hue(GROUP_RGBA[i]), atol=0.2)


def test_evaluate_runs_episodes_of_the_domain():
    from momawb.evaluation import evaluate

    class Still:
        memory_length = 0

        def act(self, obs, history, greedy=True):
            return torch.zeros(obs.shape[0], 4, 2)

    d = make("ant", observation="po", episode_length=20)
    res = evaluate(Still(), d, episodes=2, seed=7)
    assert res.lengths.tolist() == [20, 20]
    env = d.make_env()
    env.reset(seed=7)
    manual = sum(env.step({a: np.zeros(2, np.float32) for a in AGENTS})[1]["agent_0"] for _ in range(20))
    assert res.returns[0] == pytest.approx(manual)
    assert res.scores[0] == pytest.approx((manual + 325.6) / (3879.7 + 325.6))


def test_domain_normalises_with_the_references_a_dataset_carries():
    from types import SimpleNamespace
    dom = A.make_domain("po")
    measured = SimpleNamespace(meta={"reference_returns": {"random": -50.0, "expert": 2450.0}}, source="gen")
    mine = dom.for_dataset(measured)
    assert mine.reference_returns == (-50.0, 2450.0) and mine.task == "po" and mine.n_agents == 4
    assert mine.normalize([1200.0])[0] == pytest.approx(0.5)
    assert dom.reference_returns == A.D4RL_REFERENCE_RETURNS                      # the original is untouched
    assert dom.for_dataset(SimpleNamespace(meta={}, source="d4rl")) is dom           # a real D4RL file
    with pytest.raises(ValueError, match="cannot normalise"):
        dom.for_dataset(SimpleNamespace(meta={"reference_returns": {"random": 1.0, "expert": 1.0}}, source="x"))
