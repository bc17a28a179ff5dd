"""Reacher conventions: which way a team bends the elbow, and when its two agents fight.

The two-agent Reacher expert-mix dataset (PAPER.md section 6) mixes teams that reach every
target with the elbow bent counter-clockwise (theta_2 >= 0, `CCW`) and teams that bend it
clockwise (theta_2 <= 0, `CW`). A decentralised learner can end up with a shoulder agent that
learnt one convention and an elbow agent that learnt the other: a *mis-coordinated* team.

Definitions (all measurable from an episode's qpos, torques and fingertip-target vector):

* **Elbow angle** theta_2 = qpos[1] (exact, also past +-pi). From states (cos, sin) alone it
  is rebuilt by unwrapping atan2(sin, cos) along the episode (`unwrapped_elbow`): exact while
  the elbow moves less than pi per step (|theta_2 dot| < 157 rad/s at dt = 0.02 s).
* **Settled window**: the last ``window`` fraction of the episode (default the second half),
  when a competent team holds its reaching posture.
* **Convention of an episode**: the sign of the median theta_2 over the settled window
  (+1 CCW, -1 CW, 0 when |median| <= ``straight_tol``: an almost straight arm, which both
  conventions share). The elbow *flips* when less than ``agreement`` of the settled window
  lies on the median's side.
* **Torques fighting** (per step): each agent's torque alone gives the fingertip an
  instantaneous acceleration ``c_i = J_tip M^{-1} e_i gear_i u_i`` (MuJoCo's fingertip
  Jacobian J_tip and joint-space mass matrix M at the step's qpos; damping, Coriolis and
  gravity terms are shared and left out). The agents fight at that step when the two
  contributions oppose each other, ``c_0 . c_1 < 0``, and both are non-negligible
  (``|u_i| > torque_tol``): part of each agent's torque, paid for in the control cost, only
  cancels the other's. A torque that pushes a joint further into its limit (|q_j| within
  ``limit_margin`` of the joint range and the torque's sign = q_j's) moves nothing and counts
  as zero (a folded arm held against the elbow stop is not a fight). ``fight_fraction`` is
  the share of the episode's steps where they fight.
* **Reached**: the mean fingertip-target distance over the settled window is at most
  ``reach_tol`` (default 0.03 m; the target has radius 0.009 m, the fingertip 0.01 m).
* **Mis-coordinated episode**: the elbow flips in the settled window, or the target is *not*
  reached while the torques fight on at least ``fight_threshold`` (default half) of the steps.
  A team that misses the target without fighting is merely weak: its episode keeps its
  convention label.

`episode_label` labels dataset episodes (qpos stored by momawb generators, or states);
`measure_conventions` runs greedy episodes of any `momawb.evaluation.Team` and returns the
fractions that bend CCW, CW, are mis-coordinated (or end with a straight arm).
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from momawb.domains.reacher import CCW, CW, ReacherSimulator, elbow_angle
from momawb.evaluation import MixedTeam  # re-exported: agent i of teams[i]

__all__ = ["MixedTeam", "MISCOORDINATED", "STRAIGHT", "LABEL_NAMES", "ConventionParams", "unwrapped_elbow",
           "tip_accelerations", "blocked", "fighting", "episode_label", "label_episodes", "measure_conventions",
           "dataset_labels"]

MISCOORDINATED, STRAIGHT = 2, 0
LABEL_NAMES = {CCW: "ccw", CW: "cw", MISCOORDINATED: "miscoordinated", STRAIGHT: "straight"}


@dataclass(frozen=True)
class ConventionParams:
    """Thresholds of the definitions in the module docstring."""

    window: float = 0.5            # settled window: last fraction of the episode
    straight_tol: float = 0.05     # rad: |median theta_2| below this is a straight arm
    agreement: float = 0.8         # share of the settled window on the median's side (else: flip)
    reach_tol: float = 0.03        # m: mean fingertip-target distance in the window
    fight_threshold: float = 0.5   # share of fighting steps that makes a failed episode mis-coordinated
    torque_tol: float = 0.05       # |u_i| below this: the agent is idle, not fighting
    limit_margin: float = 0.05     # rad: a joint this close to its range pushed outwards is blocked


_SIM: ReacherSimulator | None = None


def _sim() -> ReacherSimulator:
    global _SIM
    if _SIM is None:
        _SIM = ReacherSimulator()
    return _SIM


def unwrapped_elbow(states) -> np.ndarray:
    """theta_2 along episodes (..., T, 10) rebuilt from (cos, sin) by unwrapping over time."""
    return np.unwrap(elbow_angle(np.asarray(states, np.float64)), axis=-1)


def tip_accelerations(qpos, torques) -> np.ndarray:
    """(T, 2 agents, 2 xy): fingertip acceleration each agent's torque alone produces.

    ``qpos`` (T, 4) (or (T, 2) joint angles), ``torques`` (T, 2) agent actions (clipped to
    the control range as MuJoCo does). ``c_i = J_tip M^{-1} e_i gear_i u_i``.
    """
    sim = _sim()
    m, d = sim.model, mujoco.MjData(sim.model)
    qpos, u = np.asarray(qpos, np.float64), np.clip(np.asarray(torques, np.float64).reshape(len(qpos), -1), -1, 1)
    tip = m.body("fingertip").id
    act = sim.actuators
    dof = m.jnt_dofadr[m.actuator_trnid[act, 0]]                 # (2,) dof of each agent's joint
    gear = m.actuator_gear[act, 0]
    out = np.zeros((len(qpos), len(act), 2))
    jacp, M = np.zeros((3, m.nv)), np.zeros((m.nv, m.nv))
    for t in range(len(qpos)):
        d.qpos[:] = 0.0
        d.qpos[: qpos.shape[1]] = qpos[t]
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_crb(m, d)
        mujoco.mj_fullM(m, d, M)
        mujoco.mj_jacBody(m, d, jacp, None, tip)
        minv = np.linalg.inv(M)
        out[t] = ((jacp[:2] @ minv[:, dof]) * (gear * u[t])).T     # every agent at once
    return out


def blocked(qpos, torques, limit_margin: float = ConventionParams.limit_margin) -> np.ndarray:
    """(T, 2) bool: agent i's torque pushes its (limited) joint further into the joint's range end."""
    sim = _sim()
    m = sim.model
    jnt = m.actuator_trnid[sim.actuators, 0]
    q = np.asarray(qpos, np.float64)[:, m.jnt_qposadr[jnt]]                  # (T, 2)
    u = np.asarray(torques, np.float64).reshape(len(q), -1)
    lo, hi = m.jnt_range[jnt, 0], m.jnt_range[jnt, 1]
    limited = m.jnt_limited[jnt].astype(bool)
    return limited & (((q >= hi - limit_margin) & (u > 0)) | ((q <= lo + limit_margin) & (u < 0)))


def fighting(qpos, torques, torque_tol: float = ConventionParams.torque_tol,
             limit_margin: float = ConventionParams.limit_margin) -> np.ndarray:
    """(T,) bool: the two agents' fingertip accelerations oppose (c_0 . c_1 < 0), both active
    (|u_i| > torque_tol) and neither blocked by its joint limit (`blocked`)."""
    c = tip_accelerations(qpos, torques)
    u = np.abs(np.asarray(torques, np.float64).reshape(len(c), -1))
    active = (u > torque_tol) & ~blocked(qpos, torques, limit_margin)
    return (np.einsum("tk,tk->t", c[:, 0], c[:, 1]) < 0) & active.all(1)


def episode_label(qpos, torques, tip_to_target, params: ConventionParams = ConventionParams()) -> dict:
    """Label one episode: ``qpos`` (T, 4) or (T, 2) (exact elbow angles), ``torques`` (T, 2),
    ``tip_to_target`` (T, 2) fingertip minus target (state[8:10]).

    Returns ``label`` (CCW +1, CW -1, MISCOORDINATED 2, STRAIGHT 0), ``name``, ``elbow``
    (median theta_2 in the window), ``flip``, ``reached``, ``fight_fraction``, ``distance``.
    """
    qpos = np.asarray(qpos, np.float64)
    T = len(qpos)
    w0 = min(T - 1, int(np.floor(T * (1 - params.window))))
    th = qpos[w0:, 1]
    med = float(np.median(th))
    side = np.sign(med) if abs(med) > params.straight_tol else 0.0
    flip = bool(side != 0 and np.mean(np.sign(th) == side) < params.agreement)
    dist = float(np.linalg.norm(np.asarray(tip_to_target, np.float64)[w0:, :2], axis=-1).mean())
    reached = dist <= params.reach_tol
    fight = float(fighting(qpos, torques, params.torque_tol, params.limit_margin).mean())
    if flip or (not reached and fight >= params.fight_threshold):
        label = MISCOORDINATED
    else:
        label = int(side) if side else STRAIGHT
    return {"label": label, "name": LABEL_NAMES[label], "elbow": med, "flip": flip, "reached": reached,
            "fight_fraction": fight, "distance": dist}


def _summary(labels: list[dict]) -> dict:
    lab = np.array([x["label"] for x in labels])
    out = {LABEL_NAMES[k]: float(np.mean(lab == k)) for k in (CCW, CW, MISCOORDINATED, STRAIGHT)}
    out.update(episodes=len(labels), reached=float(np.mean([x["reached"] for x in labels])),
               fight_fraction=float(np.mean([x["fight_fraction"] for x in labels])),
               distance=float(np.mean([x["distance"] for x in labels])))
    pure = {k: out[LABEL_NAMES[k]] for k in (CCW, CW)}
    best = max(pure, key=pure.get)
    out["convention"] = LABEL_NAMES[best] if pure[best] >= 0.8 else "mixed"
    return out


def label_episodes(states, actions, alive=None, qpos=None, params: ConventionParams = ConventionParams()) -> list[dict]:
    """Labels of E episodes: states (E, T, 10), actions (E, T, 2[, 1]), optional alive (E, T),
    optional exact qpos (E, T, 4) (else theta_2 is unwrapped from the states)."""
    states = np.asarray(states, np.float64)
    actions = np.asarray(actions, np.float64).reshape(states.shape[0], states.shape[1], -1)
    out = []
    for e in range(len(states)):
        T = int(np.asarray(alive[e]).sum()) if alive is not None else states.shape[1]
        s = states[e, :T]
        if qpos is not None:
            q = np.asarray(qpos[e, :T], np.float64)
        else:
            q = np.stack([np.arctan2(s[:, 2], s[:, 0]), unwrapped_elbow(s)], 1)
        out.append(episode_label(q, actions[e, :T], s[:, 8:10], params))
    return out


def dataset_labels(dataset, params: ConventionParams = ConventionParams()) -> list[dict]:
    """Per-episode labels of a Reacher `Dataset` (uses its qpos when stored)."""
    out = []
    for a, b in dataset.episode_bounds():
        s = dataset.observations[a:b].astype(np.float64)
        if dataset.qpos is not None:
            q = dataset.qpos[a:b]
        else:
            q = np.stack([np.arctan2(s[:, 2], s[:, 0]), unwrapped_elbow(s)], 1)
        out.append(episode_label(q, dataset.actions[a:b], s[:, 8:10], params))
    return out


def measure_conventions(team, domain, episodes: int = 100, seed: int = 10_101, device=None,
                        params: ConventionParams = ConventionParams(), return_labels: bool = False) -> dict:
    """Greedy episodes of ``team``: fractions ``ccw``, ``cw``, ``miscoordinated``, ``straight``,
    the team's ``convention`` ('ccw'/'cw' when >= 80 % of its episodes agree, else 'mixed'),
    ``reached``, mean ``fight_fraction``, ``distance``, and ``return``/``score``."""
    from momawb.evaluation import evaluate
    res = evaluate(team, domain, episodes=episodes, seed=seed, device=device, record=True)
    tr = res.trajectories
    labels = label_episodes(tr["states"], tr["actions"], tr["alive"], params=params)
    out = _summary(labels)
    out.update({"return": float(res.returns.mean()), "score": res.score})
    if return_labels:
        out["labels"] = labels
    return out
