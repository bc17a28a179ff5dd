"""Four-agent Ant (PAPER.md section 6): Gymnasium ``Ant-v5`` (no ``cfrc_ext`` in the observation), one agent per leg.

Agent i drives and observes leg i+1; its actuators are read from the MuJoCo model's
``actuator_trnid`` at run time (tested), never from this table. Positions in the torso frame,
x forward (the rewarded direction), y left; the XML's body names do not match them:

=========  ======  =======  =========  ===============  ========  =================
agent      hip     ankle    actuators  leg body (XML)   position  foot geom
=========  ======  =======  =========  ===============  ========  =================
agent_0    hip_1   ankle_1  2 3        front_left_leg   +x +y     left_ankle_geom
agent_1    hip_2   ankle_2  4 5        front_right_leg  -x +y     right_ankle_geom
agent_2    hip_3   ankle_3  6 7        back_leg         -x -y     third_ankle_geom
agent_3    hip_4   ankle_4  0 1        right_back_leg   +x -y     fourth_ankle_geom
=========  ======  =======  =========  ===============  ========  =================

Per-agent actions: Box(-1, 1, (2,)) = (hip, ankle) torques (gear 150), sent to ``data.ctrl`` and
charged the control cost as given, as in Ant-v5. A dataset's *joint* action is Ant-v5's action
vector in actuator order (hip_4, ankle_4, hip_1, ankle_1, ..., ankle_3), as D4RL, Minari and
Stable-Baselines3 store it; ``Domain.action_index`` (the actuators column) splits it. (The
paper's released code split it agent-major: its agent i observed leg i+1 but drove leg i.)

Global state ``state()`` (27,) float64 = Ant-v5's observation ``concat(qpos[2:], qvel)``; the
torso x, y (``qpos[0:2]``) are not in it:

=======  ==============================  ============================================
index    name                            source
=======  ==============================  ============================================
0        torso z                         qpos[2] (m)
1-4      torso qw, qx, qy, qz            qpos[3:7], orientation quaternion
5-12     hip_1, ankle_1, ..., ankle_4    qpos[7:15], joint angles (rad)
13-15    torso vx, vy, vz                qvel[0:3] (m/s, world frame)
16-18    torso wx, wy, wz                qvel[3:6] (rad/s, torso frame)
19-26    hip_1, ankle_1, ..., ankle_4    qvel[6:14], joint velocities (rad/s)
=======  ==============================  ============================================

Observation settings (``make_domain(observation=...)``): ``fo``, every agent sees the state
0..26; ``po``, the ``obs_index`` rows below (trailing -1 padding in ``Domain.observe``). Each
row starts with the agent's own leg: hip angle, ankle angle, hip velocity, ankle velocity.

=======  =======  ============================================  ==================================
setting  agent    obs_index                                     meaning
=======  =======  ============================================  ==================================
po       agent_0  5 6 19 20 0 1 2 3 4 13 14 15 16 17 18         own leg, torso z, quat, lin/ang vel
po       agent_1  7 8 21 22                                     own leg only
po       agent_2  9 10 23 24                                    own leg only
po       agent_3  11 12 25 26                                   own leg only
=======  =======  ============================================  ==================================

Under ``po`` the torso agent `TORSO_AGENT` = agent_0 (the paper's "yellow" leg) steers alone.
The released code's names ``4x2_full`` and ``t4x2_0`` are aliases of ``fo`` and ``po``.

Team reward (every agent gets it) = Ant-v5's, terms in each agent's ``info``:

===============  ===================================================  ==========
term             value                                                weight
===============  ===================================================  ==========
reward_forward   w * (x_after - x_before) / dt, torso body ``xpos``   w = 1
reward_survive   w * healthy                                          w = 1
reward_ctrl      -w * sum of the 8 squared actions (as given)         w = 0.5
reward_contact   -w * sum clip(cfrc_ext, -1, 1)^2                     w = 5e-4
===============  ===================================================  ==========

``x_after`` is the torso ``xpos`` that ``mj_step`` leaves (its last RK4 stage). Ant-v5 takes
``x_before`` from the ``xpos`` the *previous* step left, so its reward is not a function of
(qpos, qvel, action). With ``forward_from="qpos"`` (default) the env runs ``mj_kinematics``
first, so ``x_before`` is the torso of the state acted on: each step is what Ant-v5 computes on
its first step after a restart from (qpos, qvel), which `AntSimulator` and a restarted env
reproduce. The reward differs from Ant-v5's by exactly (x_left - x_state) / dt (tested): over
5,000 random-action steps median 4e-4, 99th percentile 0.02, max 0.09; episode returns by at
most 0.33 (``benchmarks/bench_ant_env.py``). ``forward_from="xpos"`` is Ant-v5 bit for bit.
States and the other reward terms are the same either way.

Episodes: Ant-v5's start state (qpos + U(-0.1, 0.1), qvel + 0.1 N(0, 1)); dt = 0.05 s
(frame_skip 5 x timestep 0.01, RK4). *Terminal* when unhealthy (torso z outside
``healthy_z_range`` = [0.2, 1.0] or non-finite qpos/qvel; that step's survive reward is 0);
*timeout* (truncation) after ``episode_length`` = 1000 steps, unless terminal. Reference
returns for normalised scores: D4RL's random -325.6, expert 3879.7.

Datasets: D4RL's ant files come from gym's Ant-v2, whose ``ant.xml`` has Gymnasium's bodies,
joints and actuators in the same order (Gymnasium adds only the "track" camera), so their
111-d observations (qpos[2:] 13, qvel 14, cfrc_ext 84) need no permutation:
`state_from_observations` keeps the first 27 entries, as for Gymnasium/Minari Ant-v5 (105-d).
D4RL's contact forces, hence contact costs, were zero under mujoco-py 2.x.

Ground truth: `AntSimulator`, restarted from stored (qpos (15,), qvel (14,)). Gait diagrams:
`foot_contacts`; frames: `ant_frames` (drawn by `momawb.domains.ant_render`).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from momawb.domains import Domain, SimStep
from momawb.domains.ant_render import PosedRenderer, touching, touching_along

__all__ = ["AntMultiAgentEnv", "AntSimulator", "make_domain", "observation_index", "actuators_of_agents",
           "state_from_observations", "feet_touching", "foot_contacts", "ant_frames", "ant_painter",
           "STATE_LABELS", "STATE_DIM", "AGENT_LEGS", "TORSO_AGENT", "OBS_INDEX", "D4RL_REFERENCE_RETURNS"]

GYM_ID = "Ant-v5"
GYM_KWARGS = {"include_cfrc_ext_in_observation": False}
EPISODE_LENGTH = 1000
STATE_DIM = 27
D4RL_REFERENCE_RETURNS = (-325.6, 3879.7)   # (random, expert), D4RL infos.py / PAPER.md section 6
AGENT_LEGS = (("hip_1", "ankle_1"), ("hip_2", "ankle_2"), ("hip_3", "ankle_3"), ("hip_4", "ankle_4"))
TORSO_AGENT = "agent_0"                     # under ``po`` the only agent that sees the torso
_JOINTS = tuple(j for leg in AGENT_LEGS for j in leg)   # qpos order (tested against jnt_qposadr)
STATE_LABELS = ("torso z", "torso qw", "torso qx", "torso qy", "torso qz", *(f"{j} angle" for j in _JOINTS),
                "torso vx", "torso vy", "torso vz", "torso wx", "torso wy", "torso wz",
                *(f"{j} velocity" for j in _JOINTS))
OBS_INDEX = {                               # unpadded rows; the module docstring's table, tested
    "fo": (tuple(range(STATE_DIM)),) * len(AGENT_LEGS),
    "po": ((5, 6, 19, 20, 0, 1, 2, 3, 4, 13, 14, 15, 16, 17, 18), (7, 8, 21, 22), (9, 10, 23, 24),
           (11, 12, 25, 26)),
}
ALIASES = {"4x2_full": "fo", "t4x2_0": "po"}
OBS_WIDTHS = {27: "Ant-v5 without cfrc_ext (this domain's state)", 105: "Gymnasium/Minari Ant-v5 (27 + 78 cfrc_ext)",
              111: "D4RL ant (gym Ant-v2: 27 + 84 cfrc_ext)"}


# ---------------------------------------------------------------------------------- spec helpers
def _setting(observation: str) -> str:
    name = ALIASES.get(observation, observation)
    if name not in OBS_INDEX:
        raise ValueError(f"unknown Ant observation setting {observation!r}; "
                         f"choose one of {', '.join(OBS_INDEX)} (aliases: {', '.join(ALIASES)})")
    return name


def observation_index(observation: str = "fo") -> np.ndarray:
    """The setting's ``Domain.obs_index``: (4, obs_dim) state coordinates, -1 = trailing pad."""
    rows = OBS_INDEX[_setting(observation)]
    width = max(len(r) for r in rows)
    return np.array([list(r) + [-1] * (width - len(r)) for r in rows], np.int64)


@lru_cache(maxsize=1)
def _model() -> mujoco.MjModel:
    """Gymnasium's ``ant.xml`` (the model Ant-v5 loads); treat as read-only."""
    import gymnasium.envs.mujoco as gym_mujoco
    return mujoco.MjModel.from_xml_path(str(Path(gym_mujoco.__file__).parent / "assets" / "ant.xml"))


def actuators_of_agents(model: mujoco.MjModel | None = None) -> np.ndarray:
    """(4, 2) actuator index of each agent's (hip, ankle), found via ``actuator_trnid`` -> joint names."""
    model = _model() if model is None else model
    names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, int(j)) for j in model.actuator_trnid[:, 0]]
    missing = [j for j in _JOINTS if j not in names]
    if missing:
        raise ValueError(f"no actuator drives joint(s) {missing}; actuators drive {names}")
    return np.array([[names.index(j) for j in leg] for leg in AGENT_LEGS], np.int64)


def _leg_geoms(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    """(ngeom,) leg index of every geom of a leg (-1: none) and of every foot geom (-1: not a foot).

    A leg is the body its hip joint moves, that body's parent (the thigh stub) and the body its
    ankle joint moves (the foot: the lower leg, whose capsule touches the floor)."""
    leg, foot = np.full(model.ngeom, -1), np.full(model.ngeom, -1)
    for i, (hip, ankle) in enumerate(AGENT_LEGS):
        hip_body, foot_body = model.jnt_bodyid[model.joint(hip).id], model.jnt_bodyid[model.joint(ankle).id]
        leg[np.isin(model.geom_bodyid, [model.body_parentid[hip_body], hip_body, foot_body])] = i
        foot[model.geom_bodyid == foot_body] = i
    return leg, foot


def state_from_observations(obs) -> np.ndarray:
    """The 27-d states of Ant observations (..., D): D4RL (111), Gymnasium/Minari Ant-v5 (105) or 27.

    All three start with ``qpos[2:]`` (13) and ``qvel`` (14) in the same joint order (module
    docstring), so the state is the first 27 entries (a copy). Raises ValueError for any other width.
    """
    obs = np.asarray(obs)
    if obs.ndim == 0 or obs.shape[-1] not in OBS_WIDTHS:
        width = obs.shape[-1] if obs.ndim else "a scalar"
        raise ValueError(f"Ant observations must have width {', '.join(f'{k} ({v})' for k, v in OBS_WIDTHS.items())}; "
                         f"got width {width} (shape {obs.shape})")
    return obs[..., :STATE_DIM].copy()


# ---------------------------------------------------------------------------------- contacts
def feet_touching(model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
    """(4,) bool: agent i's foot geom (table above) is in ``data.contact`` with the floor, i.e.
    within the contact margin (2 cm: 1 cm per geom in ant.xml), where contact forces act; a
    resting Ant stands about 2 cm above the floor (`momawb.domains.ant_render.touching`; call
    ``mj_forward`` first)."""
    return touching(model, data, _leg_geoms(model)[1])


def foot_contacts(qpos, qvel=None, model: mujoco.MjModel | None = None) -> np.ndarray:
    """Feet on the floor along states, for gait diagrams: qpos (T, 15) [, qvel (T, 14)] -> (T, 4)
    bool, or (15,) -> (4,). Each row: set the state, ``mj_forward``, `feet_touching`."""
    model = _model() if model is None else model
    return touching_along(model, _leg_geoms(model)[1], qpos, qvel)


def ant_painter(height: int = 240, width: int = 240, highlight: int | None = 0, model=None) -> PosedRenderer:
    """A `PosedRenderer` of the Ant: leg i in ``GROUP_RGBA[i]``, agent ``highlight``'s leg in
    ``HIGHLIGHT_RGBA`` (yellow), camera tracking the torso from the side and above."""
    model = _model() if model is None else model
    return PosedRenderer(model, _leg_geoms(model)[0], height, width, highlight, track_body=model.body("torso").id)


def ant_frames(qpos, qvel=None, size: int | tuple[int, int] = 240, highlight: int | None = 0,
               every: int = 1) -> np.ndarray:
    """RGB frames (T', H, W, 3) uint8 of the Ant re-posed at qpos (T, 15) [, qvel (T, 14)].

    ``size``: H = W or (H, W). ``highlight``: the agent whose leg is yellow (default agent 0,
    the torso agent under po), None for none; the other legs are blue, red, green, purple by
    agent. Every ``every``-th state; the camera tracks the torso. Headless: ``MUJOCO_GL=egl``.
    """
    h, w = (size, size) if np.isscalar(size) else size
    painter = ant_painter(int(h), int(w), highlight)
    try:
        return painter.frames(qpos, qvel, every)
    finally:
        painter.close()


# ---------------------------------------------------------------------------------- the env
class AntMultiAgentEnv(ParallelEnv):
    """Ant-v5 as a four-agent PettingZoo ``ParallelEnv`` (spec: the module docstring).

    ``ant_kwargs`` go to ``gymnasium.make("Ant-v5", ...)`` (e.g. ``ctrl_cost_weight``) except the
    observation options. ``reset(options={"qpos": ..., "qvel": ...})`` restarts from a stored
    MuJoCo state; ``sim_state()`` gives it; ``ant`` is the unwrapped single-agent env underneath.
    ``render()`` (``render_mode="rgb_array"``) draws a ``width`` x ``height`` frame from a camera
    that tracks the torso, legs coloured as in `ant_frames` (the torso agent's leg highlighted under po).
    """

    metadata = {"name": "four_agent_ant_v0", "render_modes": ["rgb_array"], "is_parallelizable": True,
                "render_fps": 20}

    def __init__(self, observation: str = "fo", episode_length: int = EPISODE_LENGTH,
                 render_mode: str | None = None, forward_from: str = "qpos", width: int = 480,
                 height: int = 480, **ant_kwargs):
        if episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        if forward_from not in ("qpos", "xpos"):
            raise ValueError(f"forward_from must be 'qpos' (Markov reward) or 'xpos' (Ant-v5's), got {forward_from!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        fixed = sorted(set(ant_kwargs) & {"include_cfrc_ext_in_observation",
                                          "exclude_current_positions_from_observation"})
        if fixed:
            raise ValueError(f"{fixed} would change the 27-d state; the four-agent Ant fixes them")
        self.observation, self.episode_length, self.render_mode = _setting(observation), episode_length, render_mode
        self.forward_from, self._size = forward_from, (height, width)
        self.ant = gym.make(GYM_ID, **GYM_KWARGS, **ant_kwargs).unwrapped
        self.possible_agents = [f"agent_{i}" for i in range(len(AGENT_LEGS))]
        self.agents: list[str] = []
        self._actuators = actuators_of_agents(self.ant.model)
        self._rows = [np.array(r, np.int64) for r in OBS_INDEX[self.observation]]
        self._ctrl, self._state, self._t, self._painter = np.zeros(self.ant.model.nu), np.zeros(STATE_DIM), 0, None
        self.state_space = spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float64)
        lo, hi = self.ant.model.actuator_ctrlrange.T
        self._obs_spaces = {a: spaces.Box(-np.inf, np.inf, (len(r),), np.float64)
                            for a, r in zip(self.possible_agents, self._rows)}
        self._act_spaces = {a: spaces.Box(lo[k].astype(np.float32), hi[k].astype(np.float32), dtype=np.float32)
                            for a, k in zip(self.possible_agents, self._actuators)}

    def observation_space(self, agent: str) -> spaces.Box:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Box:
        return self._act_spaces[agent]

    def state(self) -> np.ndarray:
        """The global state (27,): Ant-v5's observation (module docstring table)."""
        return self._state.copy()

    def sim_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of MuJoCo's (qpos (15,), qvel (14,)) now: what `AntSimulator` restarts from."""
        return self.ant.data.qpos.copy(), self.ant.data.qvel.copy()

    def foot_contacts(self) -> np.ndarray:
        """(4,) bool: which agents' feet touch the floor in the current state (`foot_contacts`)."""
        return foot_contacts(*self.sim_state(), model=self.ant.model)

    def _obs(self) -> dict:
        return {a: self._state[self._rows[i]] for i, a in enumerate(self.possible_agents) if a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None):
        """Ant-v5's reset; with ``options={"qpos": (15,), "qvel": (14,)}`` restart from that state."""
        options = dict(options or {})
        qpos, qvel = options.pop("qpos", None), options.pop("qvel", None)
        self._state, _ = self.ant.reset(seed=seed, options=options or None)
        if qpos is not None or qvel is not None:
            m = self.ant.model
            qpos, qvel = np.asarray(qpos, np.float64), np.asarray(qvel, np.float64)
            if qpos.shape != (m.nq,) or qvel.shape != (m.nv,) or not np.isfinite(np.r_[qpos, qvel]).all():
                raise ValueError(f"restart needs finite qpos ({m.nq},) and qvel ({m.nv},), got shapes "
                                 f"{qpos.shape} and {qvel.shape}")
            self.ant.set_state(qpos, qvel)
            self.ant.data.qacc_warmstart[:] = 0.0      # as `AntSimulator`: nothing carried over
            self._state = self.ant._get_obs()
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
            if u.shape != (2,):
                raise ValueError(f"{a}'s action must be (hip, ankle) torques, shape (2,), got {np.shape(actions[a])}")
            self._ctrl[self._actuators[i]] = u
        if self.forward_from == "qpos":
            mujoco.mj_kinematics(self.ant.model, self.ant.data)   # x_before = the torso of s_t
        self._state, reward, terminated, _, info = self.ant.step(self._ctrl)
        self._t += 1
        timeout = self._t >= self.episode_length and not terminated
        obs = self._obs()
        rewards = {a: float(reward) for a in self.agents}
        terms = {a: bool(terminated) for a in self.agents}
        truncs = {a: timeout for a in self.agents}
        infos = {a: {k: float(v) for k, v in info.items()} for a in self.agents}
        if terminated or timeout:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def render(self):
        if self.render_mode is None:
            return None
        if self._painter is None:
            self._painter = ant_painter(*self._size, highlight=0 if self.observation == "po" else None,
                                        model=self.ant.model)
        return self._painter.frame(*self.sim_state())

    def close(self) -> None:
        if self._painter is not None:
            self._painter.close()
            self._painter = None
        self.ant.close()


# ---------------------------------------------------------------------------------- ground truth
class AntSimulator:
    """Batched ground-truth Ant restarted from dataset states (Table 5's "simulator").

    One ``MjModel``/``MjData`` pair; each row sets qpos, qvel, ctrl (zero warm start, so rows are
    independent of the batch order), runs ``mj_kinematics`` (x_before), ``mj_step(nstep=5)`` and
    ``mj_rnePostConstraint`` exactly as `AntMultiAgentEnv` with ``forward_from="qpos"`` does.
    (``mujoco.rollout`` steps a batch in C, but returns neither the torso ``xpos`` of the last RK4
    stage nor ``cfrc_ext``, which Ant-v5's forward reward and contact cost read.)
    """

    def __init__(self, **ant_kwargs):
        env = gym.make(GYM_ID, **GYM_KWARGS, **ant_kwargs).unwrapped
        self.model, self.frame_skip, self.dt = env.model, env.frame_skip, env.dt
        self.weights = {"forward": env._forward_reward_weight, "healthy": env._healthy_reward,
                        "ctrl": env._ctrl_cost_weight, "contact": env._contact_cost_weight}
        self.healthy_z_range, self.contact_force_range = env._healthy_z_range, env._contact_force_range
        self.terminate_when_unhealthy = env._terminate_when_unhealthy
        self.main_body = self.model.body(env._main_body).id
        env.close()
        self.data = mujoco.MjData(self.model)
        self.actuators = actuators_of_agents(self.model)

    def step(self, states: np.ndarray, actions: np.ndarray, qpos: np.ndarray | None = None,
             qvel: np.ndarray | None = None) -> SimStep:
        """states (B, 27), per-agent actions (B, 4, 2), qpos (B, 15), qvel (B, 14) -> `SimStep` (float64).

        Actions are per agent (use ``domain.split_actions`` on dataset joint actions). Without
        qpos/qvel the MuJoCo state is rebuilt from the states with torso x = y = 0: Ant's dynamics
        and reward do not depend on x, y (an infinite floor plane), so the next states and rewards
        are the same up to rounding, and the returned qpos holds x, y relative to that origin.
        """
        states = np.asarray(states, np.float64)
        b, m = len(states), self.model
        act = np.asarray(actions, np.float64)
        if states.ndim != 2 or states.shape[1] != STATE_DIM:
            raise ValueError(f"states must be (B, {STATE_DIM}), got shape {states.shape}")
        if act.shape != (b, len(AGENT_LEGS), 2):
            raise ValueError(f"actions must be per agent, ({b}, 4, 2), got shape {act.shape}; "
                             "split dataset joint actions with domain.split_actions")
        if qpos is None or qvel is None:
            qpos, qvel = np.concatenate([np.zeros((b, 2)), states[:, :13]], 1), states[:, 13:]
        qpos, qvel = np.asarray(qpos, np.float64), np.asarray(qvel, np.float64)
        if qpos.shape != (b, m.nq) or qvel.shape != (b, m.nv):
            raise ValueError(f"qpos/qvel must be ({b}, {m.nq}) and ({b}, {m.nv}), got {qpos.shape} and {qvel.shape}")
        ctrl = np.zeros((b, m.nu))
        ctrl[:, self.actuators.ravel()] = act.reshape(b, -1)
        d, w = self.data, self.weights
        out_qpos, out_qvel, xy = np.empty_like(qpos), np.empty_like(qvel), np.empty((b, 2, 2))
        contact_cost = np.empty(b)
        for k in range(b):
            d.qpos[:], d.qvel[:], d.ctrl[:] = qpos[k], qvel[k], ctrl[k]
            d.qacc_warmstart[:] = 0.0
            mujoco.mj_kinematics(m, d)
            xy[k, 0] = d.xpos[self.main_body, :2]
            mujoco.mj_step(m, d, nstep=self.frame_skip)
            mujoco.mj_rnePostConstraint(m, d)
            xy[k, 1] = d.xpos[self.main_body, :2]
            out_qpos[k], out_qvel[k] = d.qpos, d.qvel
            contact_cost[k] = w["contact"] * np.sum(np.square(np.clip(d.cfrc_ext, *self.contact_force_range)))
        lo, hi = self.healthy_z_range
        finite = np.isfinite(out_qpos).all(1) & np.isfinite(out_qvel).all(1)
        healthy = finite & (lo <= out_qpos[:, 2]) & (out_qpos[:, 2] <= hi)
        x_velocity = (xy[:, 1, 0] - xy[:, 0, 0]) / self.dt
        ctrl_cost = w["ctrl"] * np.sum(np.square(ctrl), 1)    # actuator order, as Ant-v5 sums it
        rewards = (x_velocity * w["forward"] + healthy * w["healthy"]) - (ctrl_cost + contact_cost)
        terminals = ~healthy if self.terminate_when_unhealthy else np.zeros(b, bool)
        return SimStep(np.concatenate([out_qpos[:, 2:], out_qvel], 1), rewards, terminals, out_qpos, out_qvel)


# ---------------------------------------------------------------------------------- the domain
def make_domain(observation: str = "fo", episode_length: int = EPISODE_LENGTH,
                reference_returns: tuple[float, float] | None = None) -> Domain:
    """The four-agent Ant `Domain` for an observation setting ('fo', 'po'); reference returns
    default to D4RL's (random -325.6, expert 3879.7); generated datasets pass their own."""
    setting = _setting(observation)
    refs = D4RL_REFERENCE_RETURNS if reference_returns is None else tuple(float(r) for r in reference_returns)
    agents = [f"agent_{i}" for i in range(len(AGENT_LEGS))]

    def env_factory(seed: int | None = None, **kw) -> AntMultiAgentEnv:
        env = AntMultiAgentEnv(setting, episode_length, **kw)
        if seed is not None:
            env.reset(seed=seed)
        return env

    return Domain(
        name="ant", task=setting, n_agents=len(AGENT_LEGS), state_dim=STATE_DIM,
        obs_index=observation_index(setting), act_dim=2, n_actions=None, episode_length=episode_length,
        reference_returns=refs, env_factory=env_factory, simulator_factory=lambda **kw: AntSimulator(**kw),
        action_index=actuators_of_agents(),
        info={"state_labels": STATE_LABELS, "agent_legs": dict(zip(agents, AGENT_LEGS)),
              "obs_labels": [[STATE_LABELS[j] for j in row] for row in OBS_INDEX[setting]],
              "torso_agent": TORSO_AGENT if setting == "po" else None, "gym_id": GYM_ID, "gym_kwargs": GYM_KWARGS},
    )
