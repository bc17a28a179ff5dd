"""Two-agent Reacher (PAPER.md section 6): Gymnasium ``Reacher-v5`` with one agent per joint.

Agents and actuators (read from the MuJoCo model's ``actuator_trnid`` at run time, tested):

=========  ============  ==========  ======================================  ================
agent      joint         actuator    role                                    action
=========  ============  ==========  ======================================  ================
agent_0    joint0        0           shoulder torque theta_1; the *leader*   Box(-1, 1, (1,))
agent_1    joint1        1           elbow torque theta_2                    Box(-1, 1, (1,))
=========  ============  ==========  ======================================  ================

Actions go to ``data.ctrl`` as given (MuJoCo clamps them to ctrlrange [-1, 1], gear 200); the
control cost is paid on the action *as given*, exactly as in Reacher-v5. The dataset's joint
action is agent-major, ``[a_0, a_1]``, which is Reacher-v5's action.

Global state ``state()`` (10,) float64 = the single-agent Reacher-v5 observation:

=====  ==================  ==========================================================
index  name                source
=====  ==================  ==========================================================
0, 1   cos theta_1, _2     ``cos(qpos[0:2])``
2, 3   sin theta_1, _2     ``sin(qpos[0:2])``
4, 5   target x, y         ``qpos[2:4]`` (slide joints; target world position)
6, 7   theta_1, _2 dot     ``qvel[0:2]`` (rad/s)
8, 9   fingertip-target    ``xpos[fingertip] - xpos[target]``, x and y, as Reacher-v5
                           reports it after ``mj_step`` (body positions of the last RK4
                           stage: within ~1e-5 of the forward kinematics of ``qpos``)
=====  ==================  ==========================================================

Observation settings (``make_domain(observation=...)``): ``obs_index`` rows, state coordinates
in slot order. Slots shared by both agents mean the same thing for both; padding (-1, a zero
in ``Domain.observe``) is trailing. The env's per-agent observation is the unpadded row.

===========  =======  =====================  =========================================
setting      agent    obs_index              meaning
===========  =======  =====================  =========================================
fo           agent_0  0 1 2 3 4 5 6 7 8 9    all-observant: both joints, target,
fo           agent_1  0 1 2 3 4 5 6 7 8 9    fingertip-to-target vector
independent  agent_0  0 2 6 4 5              own joint (cos, sin, velocity), target
independent  agent_1  1 3 7 4 5              own joint (cos, sin, velocity), target
leader       agent_0  0 1 2 3 6 7 4 5        both joints, then the target (leader)
leader       agent_1  0 1 2 3 6 7 -1 -1      both joints; no target
===========  =======  =====================  =========================================

Under partial observability nobody sees the fingertip-to-target vector. The paper's names
"all-observant" and "leader-only" are accepted as aliases of ``fo`` and ``leader``.

Team reward (every agent gets it) = Reacher-v5's, terms in each agent's ``info``:

===============  ===========================================  ======
term             value                                        weight
===============  ===========================================  ======
reward_dist      -w * ||xpos[fingertip] - xpos[target]||      w = 1
reward_ctrl      -w * sum_i a_i^2  (actions as given)         w = 1
===============  ===========================================  ======

Episodes: Reacher-v5's start state (joints uniform in +-0.1 rad, velocities +-0.005, target
uniform in the disc of radius 0.2), ``episode_length`` = 50 steps of dt = 0.02 s (frame_skip
2 x timestep 0.01, RK4), then a timeout (truncation). Reacher never terminates.

Reference returns for normalised scores: random -11.145, expert -4.237 (PAPER.md section 6).

Elbow convention (the paper's two expert families): joint1 turns about +z (``axis="0 0 1"``),
so theta_2 > 0 bends the forearm counter-clockwise relative to the upper arm, seen from above;
`elbow_convention` gives +1 (CCW, theta_2 > 0), -1 (CW, theta_2 < 0), 0 (straight arm). The
joint range is +-3 rad but the limit is soft: full torque pushes theta_2 to about +-3.4 rad,
past pi, where (cos, sin) in the state wrap around. Only ``qpos`` tells those states apart,
which is one reason datasets store ``qpos``/``qvel`` (``infos/qpos``, ``infos/qvel``).

Ground truth: `ReacherSimulator` restarts MuJoCo from stored ``(qpos, qvel)`` (nq = nv = 4;
the target lives in ``qpos[2:4]``, its velocity ``qvel[2:4]`` is always 0) and steps exactly as
Reacher-v5 does, so it reproduces the env's next state and reward.
"""
from __future__ import annotations

import importlib
import os
import sys

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from momawb.domains import Domain, SimStep

__all__ = ["TwoAgentReacherEnv", "ReacherSimulator", "make_domain", "observation_index",
           "actuator_of_agents", "elbow_angle", "elbow_convention", "sim_state_from_states",
           "STATE_LABELS", "AGENT_JOINTS", "OBS_INDEX", "REFERENCE_RETURNS", "CCW", "CW"]

GYM_ID = "Reacher-v5"
EPISODE_LENGTH = 50
REFERENCE_RETURNS = (-11.145, -4.237)   # (random, expert), PAPER.md section 6
STATE_LABELS = ("cos theta_1", "cos theta_2", "sin theta_1", "sin theta_2", "target x", "target y",
                "theta_1 dot", "theta_2 dot", "fingertip-target x", "fingertip-target y")
AGENT_JOINTS = ("joint0", "joint1")     # agent i drives the actuator whose joint is AGENT_JOINTS[i]
OBS_INDEX = {                           # unpadded rows; the module docstring's table, tested
    "fo": ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)),
    "independent": ((0, 2, 6, 4, 5), (1, 3, 7, 4, 5)),
    "leader": ((0, 1, 2, 3, 6, 7, 4, 5), (0, 1, 2, 3, 6, 7)),
}
ALIASES = {"all-observant": "fo", "leader-only": "leader"}
CCW, CW = 1, -1


# ---------------------------------------------------------------------------------- spec helpers
def _setting(observation: str) -> str:
    name = ALIASES.get(observation, observation)
    if name not in OBS_INDEX:
        raise ValueError(f"unknown Reacher observation setting {observation!r}; "
                         f"choose one of {', '.join(OBS_INDEX)} (aliases: {', '.join(ALIASES)})")
    return name


def observation_index(observation: str = "fo") -> np.ndarray:
    """The setting's ``Domain.obs_index``: (2, obs_dim) state coordinates, -1 = trailing pad."""
    rows = OBS_INDEX[_setting(observation)]
    width = max(len(r) for r in rows)
    return np.array([list(r) + [-1] * (width - len(r)) for r in rows], np.int64)


def actuator_of_agents(model: mujoco.MjModel) -> np.ndarray:
    """(2,) actuator index of each agent, found through ``actuator_trnid`` -> joint names."""
    names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, int(j)) for j in model.actuator_trnid[:, 0]]
    missing = [j for j in AGENT_JOINTS if j not in names]
    if missing:
        raise ValueError(f"no actuator drives joint(s) {missing}; actuators drive {names}")
    return np.array([names.index(j) for j in AGENT_JOINTS], np.int64)


def elbow_angle(x) -> np.ndarray:
    """theta_2 from qpos (..., 4) (exact) or states (..., 10) (atan2, in (-pi, pi])."""
    x = np.asarray(x, np.float64)
    if x.shape[-1] == 4:
        return x[..., 1]
    if x.shape[-1] == len(STATE_LABELS):
        return np.arctan2(x[..., 3], x[..., 1])
    raise ValueError(f"expected qpos (..., 4) or states (..., 10), got shape {x.shape}")


def elbow_convention(x, tol: float = 0.0) -> np.ndarray:
    """+1 (`CCW`, theta_2 > tol), -1 (`CW`, theta_2 < -tol) or 0 (straight within tol), int8.

    ``x`` is qpos (..., 4) or states (..., 10); see the module docstring for the sign and for
    states past the soft joint limit, which only qpos resolves.
    """
    th = elbow_angle(x)
    return np.where(th > tol, CCW, np.where(th < -tol, CW, 0)).astype(np.int8)


def sim_state_from_states(states) -> tuple[np.ndarray, np.ndarray]:
    """MuJoCo (qpos, qvel), each (B, 4), rebuilt from states (B, 10).

    Exact up to the states' precision while |theta_2| < pi (theta_1 is recovered modulo 2 pi,
    which the dynamics ignore); target velocity is 0. Prefer stored qpos/qvel when available.
    """
    s = np.asarray(states, np.float64)
    if s.ndim != 2 or s.shape[1] != len(STATE_LABELS):
        raise ValueError(f"states must be (B, 10), got shape {s.shape}")
    qpos = np.concatenate([np.arctan2(s[:, 2:4], s[:, 0:2]), s[:, 4:6]], 1)
    qvel = np.concatenate([s[:, 6:8], np.zeros((len(s), 2))], 1)
    return qpos, qvel


def _ensure_gl_backend() -> None:
    """On a headless Linux machine with MUJOCO_GL unset, pick EGL, else OSMesa (if either works)."""
    if os.environ.get("MUJOCO_GL") or os.environ.get("DISPLAY") or not sys.platform.startswith("linux"):
        return
    for backend in ("egl", "osmesa"):
        try:
            ctx = importlib.import_module(f"mujoco.{backend}").GLContext(1, 1)
            ctx.free()
        except Exception:  # noqa: BLE001 - any failure means: try the next backend
            continue
        os.environ["MUJOCO_GL"] = backend
        return


# ---------------------------------------------------------------------------------- the env
class TwoAgentReacherEnv(ParallelEnv):
    """Reacher-v5 as a two-agent PettingZoo ``ParallelEnv`` (spec: the module docstring).

    ``reacher_kwargs`` go to ``gymnasium.make("Reacher-v5", ...)`` (e.g. ``width``, ``height``).
    ``sim_state()`` gives MuJoCo's (qpos, qvel) for datasets; ``reacher`` is the unwrapped
    single-agent env underneath.
    """

    metadata = {"name": "two_agent_reacher_v0", "render_modes": ["rgb_array", "depth_array", "human"],
                "is_parallelizable": True, "render_fps": 50}

    def __init__(self, observation: str = "fo", episode_length: int = EPISODE_LENGTH,
                 render_mode: str | None = None, **reacher_kwargs):
        if episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        self.observation, self.episode_length, self.render_mode = _setting(observation), episode_length, render_mode
        if render_mode in ("rgb_array", "depth_array"):
            _ensure_gl_backend()
        # .unwrapped: no TimeLimit (truncation is ours), no order/passive checkers on the hot path
        self.reacher = gym.make(GYM_ID, render_mode=render_mode, **reacher_kwargs).unwrapped
        self.possible_agents = [f"agent_{i}" for i in range(len(AGENT_JOINTS))]
        self.agents: list[str] = []
        self._actuators = actuator_of_agents(self.reacher.model)
        self._rows = [np.array(r, np.int64) for r in OBS_INDEX[self.observation]]
        self._ctrl = np.zeros(self.reacher.model.nu)
        self._state = np.zeros(len(STATE_LABELS))
        self._t = 0
        self.state_space = spaces.Box(-np.inf, np.inf, (len(STATE_LABELS),), np.float64)
        # built once per env (not lru_cache on the method, which would keep every env alive)
        self._obs_spaces = {a: spaces.Box(-np.inf, np.inf, (len(r),), np.float64)
                            for a, r in zip(self.possible_agents, self._rows)}
        self._act_spaces = {a: spaces.Box(-1.0, 1.0, (1,), np.float32) for a in self.possible_agents}

    def observation_space(self, agent: str) -> spaces.Box:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Box:
        return self._act_spaces[agent]

    def state(self) -> np.ndarray:
        """The global state (10,): Reacher-v5's observation (module docstring table)."""
        return self._state.copy()

    def sim_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of MuJoCo's (qpos (4,), qvel (4,)) now: what `ReacherSimulator` restarts from."""
        return self.reacher.data.qpos.copy(), self.reacher.data.qvel.copy()

    def _obs(self) -> dict:
        return {a: self._state[self._rows[i]] for i, a in enumerate(self.possible_agents) if a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None):
        self._state, _ = self.reacher.reset(seed=seed, options=options)
        if seed is not None:
            for i, a in enumerate(self.possible_agents):
                self.action_space(a).seed(seed + i)
        self.agents, self._t = list(self.possible_agents), 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict):
        if not self.agents:
            raise RuntimeError("the episode is over; call reset() before step()")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"step needs an action for every live agent; missing {missing}")
        for i, a in enumerate(self.possible_agents):
            u = np.asarray(actions[a], np.float64).reshape(-1)
            if u.shape != (1,):
                raise ValueError(f"{a}'s action must hold one torque, got shape {np.shape(actions[a])}")
            self._ctrl[self._actuators[i]] = u[0]
        self._state, reward, _, _, info = self.reacher.step(self._ctrl)
        self._t += 1
        timeout = self._t >= self.episode_length
        obs = self._obs()
        rewards = {a: float(reward) for a in self.agents}
        terms = {a: False for a in self.agents}              # Reacher never terminates
        truncs = {a: timeout for a in self.agents}
        infos = {a: {k: float(v) for k, v in info.items()} for a in self.agents}
        if timeout:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def render(self):
        return self.reacher.render() if self.render_mode is not None else None

    def close(self) -> None:
        self.reacher.close()


# ---------------------------------------------------------------------------------- ground truth
class ReacherSimulator:
    """Batched ground-truth Reacher restarted from dataset states (Table 5's "simulator").

    One ``MjModel``/``MjData`` pair; each batch row sets qpos, qvel and ctrl, then runs
    ``mj_step(nstep=frame_skip)`` as Reacher-v5 does. (``mujoco.rollout`` would step the batch
    in C, but it returns no body positions after the step, and Reacher-v5's fingertip vector is
    the RK4 last-stage ``xpos``, not the kinematics of the new qpos.)
    """

    def __init__(self, **reacher_kwargs):
        env = gym.make(GYM_ID, **reacher_kwargs).unwrapped
        self.model, self.frame_skip = env.model, env.frame_skip
        self.reward_weights = (float(env._reward_dist_weight), float(env._reward_control_weight))
        env.close()
        self.data = mujoco.MjData(self.model)
        self.actuators = actuator_of_agents(self.model)
        self._tip, self._target = self.model.body("fingertip").id, self.model.body("target").id

    def step(self, states: np.ndarray, actions: np.ndarray, qpos: np.ndarray | None = None,
             qvel: np.ndarray | None = None) -> SimStep:
        """states (B, 10), actions (B, 2, 1) or (B, 2), qpos/qvel (B, 4) -> `SimStep` (float64).

        Without qpos/qvel the MuJoCo state is rebuilt by `sim_state_from_states`.
        """
        states = np.asarray(states, np.float64)
        b = len(states)
        act = np.asarray(actions, np.float64).reshape(b, -1)
        if act.shape[1] != len(AGENT_JOINTS):
            raise ValueError(f"actions must be (B, 2, 1) or (B, 2), got shape {np.shape(actions)}")
        if qpos is None or qvel is None:
            qpos, qvel = sim_state_from_states(states)
        qpos, qvel = np.asarray(qpos, np.float64), np.asarray(qvel, np.float64)
        if qpos.shape != (b, self.model.nq) or qvel.shape != (b, self.model.nv):
            raise ValueError(f"qpos/qvel must be ({b}, {self.model.nq}) and ({b}, {self.model.nv}), "
                             f"got {qpos.shape} and {qvel.shape}")
        ctrl = np.zeros((b, self.model.nu))
        ctrl[:, self.actuators] = act
        m, d = self.model, self.data
        out_qpos, out_qvel, vec = np.empty_like(qpos), np.empty_like(qvel), np.empty((b, 3))
        for k in range(b):
            d.qpos[:], d.qvel[:], d.ctrl[:] = qpos[k], qvel[k], ctrl[k]
            d.qacc_warmstart[:] = 0.0      # each row independent of the batch order
            mujoco.mj_step(m, d, nstep=self.frame_skip)
            out_qpos[k], out_qvel[k] = d.qpos, d.qvel
            vec[k] = d.xpos[self._tip] - d.xpos[self._target]
        th = out_qpos[:, :2]
        next_states = np.concatenate([np.cos(th), np.sin(th), out_qpos[:, 2:], out_qvel[:, :2], vec[:, :2]], 1)
        w_dist, w_ctrl = self.reward_weights
        rewards = -np.linalg.norm(vec, axis=1) * w_dist - np.square(act).sum(1) * w_ctrl
        return SimStep(next_states, rewards, np.zeros(b, bool), out_qpos, out_qvel)


# ---------------------------------------------------------------------------------- the domain
def make_domain(observation: str = "fo", episode_length: int = EPISODE_LENGTH) -> Domain:
    """The two-agent Reacher `Domain` for an observation setting ('fo', 'independent', 'leader')."""
    setting = _setting(observation)
    index = observation_index(setting)

    def env_factory(seed: int | None = None, **kw) -> TwoAgentReacherEnv:
        env = TwoAgentReacherEnv(setting, episode_length, **kw)
        if seed is not None:
            env.reset(seed=seed)
        return env

    return Domain(
        name="reacher", task=setting, n_agents=len(AGENT_JOINTS), state_dim=len(STATE_LABELS),
        obs_index=index, act_dim=1, n_actions=None, episode_length=episode_length,
        reference_returns=REFERENCE_RETURNS, env_factory=env_factory,
        simulator_factory=lambda **kw: ReacherSimulator(**kw),
        info={"state_labels": STATE_LABELS, "agent_joints": AGENT_JOINTS,
              "obs_labels": [[STATE_LABELS[j] for j in row] for row in OBS_INDEX[setting]],
              "leader": "agent_0" if setting == "leader" else None, "gym_id": GYM_ID},
    )
