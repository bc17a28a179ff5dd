import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test

from momawb.domains import make
from momawb.domains.game import CoordinationGameEnv, team_reward
from momawb.evaluation import evaluate, mean_se
from momawb.generate import GAME_DATASETS, expected_game_score, game_dataset, generate_game, game_dataset_config
from momawb.tables import TABLE1


@pytest.mark.parametrize("n_agents", [2, 3])
def test_parallel_api(n_agents):
    parallel_api_test(CoordinationGameEnv(n_agents=n_agents), num_cycles=50)


def test_payoff_and_episode_length():
    env = CoordinationGameEnv(episode_length=3)
    obs, _ = env.reset(seed=0)
    assert all(np.array_equal(o, [1.0]) for o in obs.values())
    rewards = []
    for a in [(0, 0), (0, 1), (1, 1)]:
        _, r, term, trunc, _ = env.step(dict(zip(env.possible_agents, a)))
        rewards.append(r["agent_0"])
        assert not any(term.values())
    assert rewards == [1.0, 0.0, 1.0] and all(trunc.values()) and env.agents == []
    assert team_reward(np.array([[1, 1, 1], [1, 0, 1]])).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="0 \\(left\\) or 1 \\(right\\)"):
        env.reset()
        env.step({"agent_0": 2, "agent_1": 0})


def test_observations_carry_nothing_about_others():
    d = make("game")
    assert np.array_equal(d.observe(np.ones((4, 1), np.float32)), np.ones((4, 2, 1)))


class FixedTeam:
    memory_length = 0

    def __init__(self, actions):
        self.actions = torch.tensor(actions, dtype=torch.float32)

    def act(self, obs, history, greedy=True):
        return self.actions.expand(obs.shape[0], -1)[..., None].clone()


def test_evaluation_scores():
    d = make("game")
    assert evaluate(FixedTeam([1, 1]), d, episodes=5).score == 1.0
    assert evaluate(FixedTeam([0, 1]), d, episodes=5).score == 0.0
    res = evaluate(FixedTeam([0, 0]), d, episodes=3, record=True)
    assert res.trajectories["actions"].shape == (3, 10, 2, 1) and res.lengths.tolist() == [10] * 3


def test_mean_se():
    assert mean_se([1.0]) == (1.0, 0.0)
    m, se = mean_se([0.0, 1.0, 1.0, 0.0])
    assert m == 0.5 and se == pytest.approx(np.std([0, 1, 1, 0], ddof=1) / 2)


@pytest.mark.parametrize("name", list(GAME_DATASETS))
def test_table1_scores_within_sampling_error(name, outputs):
    ds = game_dataset(name)
    d = make("game")
    per_round = ds.rewards
    se = per_round.std(ddof=1) / np.sqrt(len(per_round))
    measured = ds.normalized_scores(d).mean()
    assert abs(measured - TABLE1[name][2]) < 3 * se + 0.002, (measured, TABLE1[name][2], se)
    assert abs(measured - expected_game_score(GAME_DATASETS[name])) < 3 * se
    p_hat = ds.actions.mean(0)
    assert np.allclose(p_hat, GAME_DATASETS[name], atol=0.02)


def test_generation_is_reproducible_and_cached(outputs):
    a = generate_game(game_dataset_config("neutral"))
    b = generate_game(game_dataset_config("neutral"))
    assert np.array_equal(a.actions, b.actions)
    first = game_dataset("neutral")
    files = list((outputs / "datasets").glob("*.hdf5"))
    second = game_dataset("neutral")
    assert len(files) == 1 and np.array_equal(first.actions, second.actions)
    assert second.source == str(files[0])
    c = generate_game(game_dataset_config("neutral", seed=1))
    assert not np.array_equal(a.actions, c.actions)
