"""Iterated Coordination Game (PAPER.md section 6): pure strategy agreement.

============================  ==============================================================
agents                        ``agent_0`` ... ``agent_{N-1}`` (default N = 2)
actions                       Discrete(2): 0 = left, 1 = right
reward (team, every agent)    1 when all agents pick the same action, else 0
global state ``state()``      ``[1.0]``: the stage game is the same every round
observation (every agent)     ``[1.0]``: nothing about the other agents (pure agreement)
episode                       ``episode_length`` rounds (default 10), then a *timeout*
                              (truncation); the game never terminates
reference returns             random team 0, expert team ``episode_length``, so the
                              normalised score is the fraction of coordinated rounds
============================  ==============================================================

Why 10 rounds: the game is iterated, so an episode must hold several rounds for the 10-step
memory module to see a history at all (histories cut at episode boundaries), while the score
(fraction of coordinated rounds) does not depend on the length. With a constant state and
observation, two conventions are optimal (all left, all right) and nothing in an agent's
input tells it which one the others picked: that is the strategy-agreement problem.
The dataset's score (Table 1) is the mean reward per round.
"""
from __future__ import annotations

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from momawb.domains import Domain, SimStep

LEFT, RIGHT = 0, 1
__all__ = ["CoordinationGameEnv", "GameSimulator", "make_domain", "team_reward", "LEFT", "RIGHT"]


def team_reward(actions: np.ndarray) -> np.ndarray:
    """1.0 where every agent picked the same action; ``actions`` is (..., N) of 0/1."""
    actions = np.asarray(actions)
    return np.all(actions == actions[..., :1], axis=-1).astype(np.float32)


class CoordinationGameEnv(ParallelEnv):
    """The game as a PettingZoo ``ParallelEnv`` (see the module docstring for the spec)."""

    metadata = {"name": "coordination_game_v0", "render_modes": ["ansi"], "is_parallelizable": True}

    def __init__(self, n_agents: int = 2, episode_length: int = 10, render_mode: str | None = None):
        if n_agents < 2:
            raise ValueError(f"n_agents must be >= 2 for a coordination game, got {n_agents}")
        if episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        self.n_agents, self.episode_length, self.render_mode = n_agents, episode_length, render_mode
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        self._t = 0
        self._last: dict | None = None
        self.state_space = spaces.Box(1.0, 1.0, (1,), np.float32)
        # built once per env (the API test wants the same object on every call; an lru_cache
        # on the methods would keep every env ever made alive)
        self._obs_spaces = {a: spaces.Box(1.0, 1.0, (1,), np.float32) for a in self.possible_agents}
        self._act_spaces = {a: spaces.Discrete(2) for a in self.possible_agents}

    def observation_space(self, agent: str) -> spaces.Box:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._act_spaces[agent]

    def state(self) -> np.ndarray:
        return np.ones(1, np.float32)

    def _obs(self) -> dict:
        return {a: np.ones(1, np.float32) for a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            for i, a in enumerate(self.possible_agents):
                self.action_space(a).seed(seed + i)
        self.agents = list(self.possible_agents)
        self._t, self._last = 0, None
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict):
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"step needs an action for every live agent; missing {missing}")
        joint = np.array([int(actions[a]) for a in self.agents])
        if np.any((joint < 0) | (joint > 1)):
            raise ValueError(f"actions must be 0 (left) or 1 (right), got {joint.tolist()}")
        r = float(team_reward(joint))
        self._t += 1
        self._last = {"actions": joint.tolist(), "reward": r}
        timeout = self._t >= self.episode_length
        obs = self._obs()
        rewards = {a: r for a in self.agents}
        terms = {a: False for a in self.agents}
        truncs = {a: timeout for a in self.agents}
        infos = {a: {"coordinated": bool(r)} for a in self.agents}
        if timeout:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._last is None:
            return None
        names = ["left", "right"]
        return f"round {self._t}: {[names[a] for a in self._last['actions']]} -> {self._last['reward']}"


class GameSimulator:
    """Ground-truth batched simulator: restart from any dataset state, step joint actions."""

    def __init__(self, n_agents: int = 2, episode_length: int = 10):
        self.n_agents = n_agents

    def step(self, states: np.ndarray, actions: np.ndarray, qpos=None, qvel=None) -> SimStep:
        """(B, 1) states, (B, N, 1) actions -> next states, rewards, terminals (numpy)."""
        states = np.asarray(states, np.float32)
        rewards = team_reward(np.asarray(actions)[..., 0])
        return SimStep(np.ones_like(states), rewards, np.zeros(len(states), bool))


def make_domain(n_agents: int = 2, episode_length: int = 10) -> Domain:
    """The game's `Domain`: state [1], every agent observes [1], actions one-hot in the model."""
    return Domain(
        name="game", task=f"{n_agents}-agents", n_agents=n_agents, state_dim=1,
        obs_index=np.zeros((n_agents, 1), np.int64), act_dim=1, n_actions=2,
        episode_length=episode_length, reference_returns=(0.0, float(episode_length)),
        env_factory=lambda seed=None, **kw: CoordinationGameEnv(n_agents, episode_length, **kw),
        simulator_factory=lambda **kw: GameSimulator(n_agents, episode_length),
        info={"actions": ["left", "right"], "payoff": "1 if all actions equal else 0"},
    )
