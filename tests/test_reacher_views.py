"""Reacher pieces of the notebook: the Table 4a grid, frames of recorded states, the mixed team."""
import io

import numpy as np
import pytest
import torch

from momawb import conventions, sweep
from momawb.domains import make


def test_observation_grid_skips_centralized_methods_under_po_and_adds_memory():
    jobs = sweep.observation_grid(["iql", "ibc", "moma_ppo"], "expert-mix", range(2), "reacher",
                                  ["fo", "independent", "leader"], po_memory=True,
                                  overrides={"ibc": {"steps": 5}})
    cells = {(j.task, j.method) for j in jobs}
    assert ("fo", "iql") in cells and ("independent", "iql") not in cells and ("leader", "iql") not in cells
    assert len(jobs) == 2 * (3 + 2 + 2)
    for j in jobs:
        mem = j.section_overrides(j.method).get("memory", False)
        assert mem == (j.task != "fo"), (j.task, j.method)
        if j.method == "ibc":
            assert j.section_overrides("ibc")["steps"] == 5      # preset overrides survive


def test_observation_grid_rejects_an_unknown_setting():
    with pytest.raises(ValueError, match="observation"):
        sweep.observation_grid(["ibc"], "expert-mix", [0], "reacher", ["fo", "partial"])


class _Torque:
    """Constant torques (a, b) for both agents."""
    memory_length = 0

    def __init__(self, a, b):
        self.u = torch.tensor([a, b], dtype=torch.float32)

    def act(self, obs, history=None, greedy=True):
        return self.u.expand(obs.shape[0], 2)[..., None].clone()


def test_mixed_team_takes_agent_i_from_team_i():
    obs = torch.zeros(4, 2, 10)
    out = conventions.MixedTeam(_Torque(0.3, 0.4), _Torque(-0.5, -0.6)).act(obs)
    assert out.shape == (4, 2, 1)
    assert torch.allclose(out[:, 0, 0], torch.tensor(0.3)) and torch.allclose(out[:, 1, 0], torch.tensor(-0.6))


def test_frames_follow_the_recorded_states_and_encode():
    from PIL import Image

    from momawb import render
    ep = render.episode_of(_Torque(0.5, 1.0), make("reacher"), episodes=2)
    assert ep["states"].shape[:2] == (2, 50) and len(ep["labels"]) == 2
    try:
        frames = render.reacher_frames(ep["states"][0], every=10, size=48)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no headless OpenGL backend: {e}")
    assert len(frames) == 5 and frames[0].shape == (48, 48, 3)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).sum() > 0     # the arm moved
    strip = Image.open(io.BytesIO(render.strip_png(frames, ["a"] * 5)))
    assert strip.size == (5 * 48 + 4 * 2, 48)
    anim = Image.open(io.BytesIO(render.gif(frames)))
    assert anim.n_frames == 5
