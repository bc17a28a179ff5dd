"""Gait diagrams of the four-agent Ant (momawb.gait): contacts, statistics, figure, swap costs."""
import numpy as np
import torch

from momawb import gait
from momawb.domains import ant


class Const:
    """Every leg applies the same torques."""

    memory_length = 0

    def __init__(self, hip, ankle):
        self.u = torch.tensor([hip, ankle], dtype=torch.float32)

    def act(self, obs, history=None, greedy=True):
        return self.u.expand(obs.shape[0], obs.shape[1], 2).clone()


def test_stats_by_hand():
    c = np.array([[1, 0, 1, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 1, 0, 1], [1, 0, 1, 0]], bool)   # a trot
    s = gait.gait_stats([{"contacts": c, "speed": np.full(5, 0.5)}])
    assert s["duty"].tolist() == [0.6, 0.4, 0.6, 0.4] and s["speed"] == 0.5 and s["steps"] == 5
    assert np.allclose(s["touchdowns_per_s"], np.array([1, 1, 1, 1]) / (4 * gait.DT))
    assert s["in_phase"][0, 2] == 1.0 and s["in_phase"][0, 1] == 0.0          # diagonal together, lateral apart
    rows = gait.gait_table({"trot": s})
    assert rows[1][4] == "1.00" and rows[1][5] == "0.00"


def test_team_gaits_from_real_episodes_and_swap_costs():
    dom = ant.make_domain("fo", episode_length=60)
    still, flail = Const(0.0, 0.0), Const(1.0, -1.0)
    out = gait.team_gaits(still, dom, episodes=2)
    g = out["gaits"][0]
    assert g["contacts"].shape == (60, 4) and g["speed"].shape == (60,)
    assert np.array_equal(g["contacts"], ant.foot_contacts(out["qpos"][0], out["qvel"][0]))
    assert np.allclose(out["stats"]["duty"], np.concatenate([x["contacts"] for x in out["gaits"]]).mean(0))
    assert g["contacts"][-10:].sum(1).min() >= 2                     # the unpowered ant has settled on its feet
    fig = gait.gait_figure({"still": g, "other": out["gaits"][1]}, steps=40)
    bars = [t for t in fig.data if t.name and t.name.startswith("leg")]
    assert len(bars) == 8 and all(np.isfinite(np.asarray(t.y, float)).any() for t in bars)
    costs = gait.swap_costs(still, flail, dom, episodes=2)
    assert costs["swapped"].shape == (4,) and np.allclose(costs["drop"], costs["team"] - costs["swapped"])
    assert (costs["swapped"] != costs["team"]).any()                  # a flailing leg changes the outcome
