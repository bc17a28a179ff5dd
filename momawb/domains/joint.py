"""The single-agent view of a continuous multi-agent task: one agent that sees the global state
and acts on the joint action (a centralised learner).

``joint(domain)`` turns any continuous `Domain` into a one-agent `Domain` over the same
datasets: the agent's observation is the global state s (S,), its action is the dataset's joint
action (N * act_dim,), in the dataset's column order, and its env splits that action among the
original agents (`Domain.split_actions`). A model-free momawb learner with one agent on this
domain is the plain single-agent algorithm (TD3+BC, CQL, BC, IQL of their papers), which is what
`benchmarks/crosscheck_d3rlpy.py` compares with a reference library on the same data.
"""
from __future__ import annotations

import numpy as np

from momawb.domains import Domain

__all__ = ["joint", "JointEnv"]


class JointEnv:
    """A one-agent PettingZoo-style ``ParallelEnv`` over ``domain``'s multi-agent env: ``step``
    takes {"agent_0": joint action (N * act_dim,)}; ``state()`` and ``sim_state()`` pass through."""

    possible_agents = ["agent_0"]

    def __init__(self, inner, domain: Domain):
        self.inner, self.domain, self.agents = inner, domain, []

    def state(self) -> np.ndarray:
        return self.inner.state()

    def sim_state(self):
        return self.inner.sim_state()

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.inner.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        return {"agent_0": self.state()}, {"agent_0": {}}

    def step(self, actions: dict):
        a = np.asarray(actions["agent_0"], np.float32).reshape(-1)
        if a.shape != (self.domain.joint_action_dim,):
            raise ValueError(f"the joint agent's action must have {self.domain.joint_action_dim} entries, "
                             f"got shape {np.shape(actions['agent_0'])}")
        per_agent = self.domain.split_actions(a)
        _, rew, term, trunc, info = self.inner.step({ag: per_agent[i] for i, ag in enumerate(self.inner.agents)})
        first = next(iter(rew))
        done = bool(term[first] or trunc[first])
        out = ({"agent_0": self.state()}, {"agent_0": rew[first]}, {"agent_0": bool(term[first])},
               {"agent_0": bool(trunc[first])}, {"agent_0": info.get(first, {})})
        if done:
            self.agents = []
        return out

    def close(self) -> None:
        self.inner.close()


def joint(domain: Domain) -> Domain:
    """One agent observing the global state and acting on the joint action of ``domain``.

    Every observation setting of ``domain`` gives the same agent (it sees s), under its own task
    name ('<setting>-joint'). No ground-truth simulator is attached. Raises ValueError on a
    discrete domain (a joint index over n_actions^N actions is centralised IQL's business,
    `baselines.common.centralize`).
    """
    if domain.discrete:
        raise ValueError(f"joint() needs continuous actions; {domain.name}/{domain.task} is discrete")

    def env_factory(seed: int | None = None, **kw) -> JointEnv:
        env = JointEnv(domain.make_env(**kw), domain)
        if seed is not None:
            env.reset(seed=seed)
        return env

    return Domain(name=domain.name, task=f"{domain.task}-joint", n_agents=1, state_dim=domain.state_dim,
                  obs_index=np.arange(domain.state_dim)[None], act_dim=domain.joint_action_dim, n_actions=None,
                  episode_length=domain.episode_length, reference_returns=domain.reference_returns,
                  env_factory=env_factory,
                  info={"joint_of": domain.task, "state_labels": domain.info.get("state_labels")})
