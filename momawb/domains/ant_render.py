"""A MuJoCo model re-posed at stored states: frames and floor contacts of geom groups (Ant legs).

`PosedRenderer` copies a model, recolours groups of geoms (``geom_rgba``; one group can be
highlighted), and draws RGB frames of given (qpos, qvel) through Gymnasium's offscreen viewer
from a camera that tracks one body. OpenGL backend: ``MUJOCO_GL`` (egl or osmesa headless;
picked if unset, as for Reacher). `touching` / `touching_along` say which groups touch the
floor. Used by `momawb.domains.ant` (``ant_frames``, ``foot_contacts``, the env's ``render()``).
"""
from __future__ import annotations

import copy

import mujoco
import numpy as np

__all__ = ["PosedRenderer", "touching", "touching_along", "GROUP_RGBA", "HIGHLIGHT_RGBA"]

#: group (leg) i's colour: blue, red, green, purple
GROUP_RGBA = ((0.12, 0.47, 0.71, 1.0), (0.84, 0.15, 0.16, 1.0), (0.17, 0.63, 0.17, 1.0), (0.58, 0.40, 0.74, 1.0))
#: the highlighted group's colour: yellow (the paper's torso-agent leg)
HIGHLIGHT_RGBA = (1.0, 0.85, 0.0, 1.0)


def touching(model: mujoco.MjModel, data: mujoco.MjData, groups: np.ndarray) -> np.ndarray:
    """(n_groups,) bool: whether a geom of group i is in ``data.contact`` with a world-body geom.

    MuJoCo lists a contact once two geoms are closer than their margin (its constraint can then
    push), so 'touching' means within the margin. Read it after ``mj_forward``: after
    ``mj_step`` the list belongs to the last RK4 stage, not to the new state."""
    groups = np.asarray(groups)
    g = np.asarray(data.contact.geom[:data.ncon]).reshape(-1, 2)
    world = model.geom_bodyid[g] == 0
    out = np.zeros(int(groups.max()) + 1, bool)
    for a, b in ((0, 1), (1, 0)):
        hit = groups[g[:, a]][world[:, b]]
        out[hit[hit >= 0]] = True
    return out


def touching_along(model: mujoco.MjModel, groups: np.ndarray, qpos, qvel=None) -> np.ndarray:
    """`touching` at each state: qpos (T, nq) [, qvel (T, nv)] -> (T, n_groups) bool; (nq,) -> (n,).

    Each row: set the state in a scratch ``MjData``, ``mj_forward``, read the contacts. Contacts
    depend on qpos only; qvel defaults to zeros."""
    qpos = np.asarray(qpos, np.float64)
    single = qpos.ndim == 1
    qpos = np.atleast_2d(qpos)
    qvel = np.zeros((len(qpos), model.nv)) if qvel is None else np.atleast_2d(np.asarray(qvel, np.float64))
    if qpos.ndim != 2 or qpos.shape[1] != model.nq or qvel.shape != (len(qpos), model.nv):
        raise ValueError(f"qpos/qvel must be (T, {model.nq}) and (T, {model.nv}), got {qpos.shape} and {qvel.shape}")
    data, out = mujoco.MjData(model), np.zeros((len(qpos), int(np.max(groups)) + 1), bool)
    for t in range(len(qpos)):
        data.qpos[:], data.qvel[:] = qpos[t], qvel[t]
        mujoco.mj_forward(model, data)
        out[t] = touching(model, data, groups)
    return out[0] if single else out


class PosedRenderer:
    """RGB frames (height, width, 3) uint8 of ``model`` posed at given states.

    ``groups`` (ngeom,) int: the colour group of each geom (-1: keep its colour); group i gets
    ``GROUP_RGBA[i]``, group ``highlight`` gets ``HIGHLIGHT_RGBA``. The camera tracks body
    ``track_body`` (its subtree centre of mass) from ``distance`` (m), ``elevation`` and
    ``azimuth`` (degrees; azimuth 90 looks along +y, so +x runs left to right).
    """

    def __init__(self, model: mujoco.MjModel, groups: np.ndarray, height: int = 240, width: int = 240,
                 highlight: int | None = None, track_body: int = 1, distance: float = 3.0,
                 elevation: float = -40.0, azimuth: float = 90.0):
        from gymnasium.envs.mujoco.mujoco_rendering import OffScreenViewer

        from momawb.domains.reacher import _ensure_gl_backend
        groups = np.asarray(groups)
        n = int(groups.max()) + 1
        if n > len(GROUP_RGBA) or (highlight is not None and not 0 <= highlight < n):
            raise ValueError(f"{n} geom groups (at most {len(GROUP_RGBA)} colours); highlight must be None or "
                             f"in 0..{n - 1}, got {highlight}")
        _ensure_gl_backend()
        self.model = copy.deepcopy(model)          # recolour and enlarge the buffer of a copy only
        for g in np.flatnonzero(groups >= 0):
            self.model.geom_rgba[g] = HIGHLIGHT_RGBA if groups[g] == highlight else GROUP_RGBA[groups[g]]
        glob = self.model.vis.global_
        glob.offwidth, glob.offheight = max(glob.offwidth, width), max(glob.offheight, height)
        self.data = mujoco.MjData(self.model)
        self.viewer = OffScreenViewer(self.model, self.data, width, height)
        cam = self.viewer.cam
        cam.type, cam.trackbodyid = mujoco.mjtCamera.mjCAMERA_TRACKING, track_body
        cam.distance, cam.elevation, cam.azimuth = distance, elevation, azimuth

    def frame(self, qpos: np.ndarray, qvel: np.ndarray | None = None) -> np.ndarray:
        """One frame of the state (qpos (nq,), qvel (nv,) or zeros): set it, ``mj_forward``, draw."""
        self.data.qpos[:] = qpos
        self.data.qvel[:] = 0.0 if qvel is None else qvel
        mujoco.mj_forward(self.model, self.data)
        return np.array(self.viewer.render("rgb_array"), copy=True)

    def frames(self, qpos: np.ndarray, qvel: np.ndarray | None = None, every: int = 1) -> np.ndarray:
        """Frames (T', height, width, 3) of every ``every``-th row of qpos (T, nq) [, qvel (T, nv)]."""
        qpos = np.asarray(qpos, np.float64)
        nq, nv = self.model.nq, self.model.nv
        if qpos.ndim != 2 or qpos.shape[1] != nq or (qvel is not None and np.shape(qvel) != (len(qpos), nv)):
            raise ValueError(f"qpos must be (T, {nq}) and qvel None or (T, {nv}); "
                             f"got {qpos.shape} and {None if qvel is None else np.shape(qvel)}")
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        out = [self.frame(qpos[t], None if qvel is None else qvel[t]) for t in range(0, len(qpos), every)]
        h, w = self.viewer.viewport.height, self.viewer.viewport.width
        return np.stack(out) if out else np.zeros((0, h, w, 3), np.uint8)

    def close(self) -> None:
        self.viewer.close()
