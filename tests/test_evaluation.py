"""Evaluation helpers: mixed and swapped teams (histories included), recorded simulator states."""
import numpy as np
import pytest
import torch

from momawb import domains
from momawb.evaluation import MixedTeam, evaluate, swap_agent


class Const:
    """Every agent outputs ``value``; remembers the history it was given."""

    def __init__(self, value, memory_length=0):
        self.value, self.memory_length, self.seen = value, memory_length, []

    def act(self, obs, history=None, greedy=True):
        self.seen.append(None if history is None else history.shape)
        return torch.full((obs.shape[0], obs.shape[1], 1), float(self.value))


def test_swap_agent_replaces_one_agent_and_hands_each_team_its_history():
    team, partner = Const(1.0, memory_length=4), Const(-1.0)
    mixed = swap_agent(team, partner, agent=1, n_agents=3)
    assert mixed.memory_length == 4
    hist = torch.zeros(5, 3, 4, 2)
    out = mixed.act(torch.zeros(5, 3, 1), hist)
    assert out[:, :, 0].tolist() == [[1.0, -1.0, 1.0]] * 5
    assert team.seen == [(5, 3, 4, 2)] and partner.seen == [None]      # each team run once, own history
    short = MixedTeam(Const(0.0, memory_length=2), Const(0.0, memory_length=4))
    short.act(torch.zeros(1, 2, 1), torch.zeros(1, 2, 4, 2))
    assert short.teams[0].seen == [(1, 2, 2, 2)]                       # the last 2 steps of 4
    with pytest.raises(ValueError, match="agent must be"):
        swap_agent(team, partner, agent=3, n_agents=3)


def test_recorded_episodes_keep_the_simulator_state():
    dom = domains.make("reacher")
    res = evaluate(Const(0.0), dom, episodes=2, record=True)
    tr = res.trajectories
    assert tr["qpos"].shape == (2, 50, 4) and tr["qvel"].shape == (2, 50, 4)
    env = dom.make_env()
    env.reset(seed=10_101 + 1)                                          # evaluation's seed for episode 1
    qpos, qvel = env.sim_state()
    assert np.allclose(tr["qpos"][1, 0], qpos) and np.allclose(tr["qvel"][1, 0], qvel)
    assert np.allclose(np.cos(tr["qpos"][:, :, :2]), tr["states"][:, :, :2], atol=1e-6)
