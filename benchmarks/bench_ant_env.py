"""Steps/s of the four-agent Ant env against plain Ant-v5, of the batched simulator and of
foot contacts; and how far the env's Markov forward reward is from Ant-v5's.

Prints ratios, asserts nothing. Times are this process's CPU time (steadier on a shared machine).
Short on purpose (about 20 s): ``python benchmarks/bench_ant_env.py``.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from bench_reacher_env import best_of   # this folder: the same timing rule as for Reacher
from momawb.domains import ant, make

STEPS = 5_000          # env steps per measurement (random actions, reset at episode ends)
BATCH = 2_000          # simulator transitions per call
AGENTS = [f"agent_{i}" for i in range(4)]


def plain_ant(env, joint) -> int:
    env.reset(seed=0)
    for t in range(STEPS):
        _, _, term, trunc, _ = env.step(joint[t])
        if term or trunc:
            env.reset()
    return STEPS


def four_agent(env, per_agent) -> int:
    env.reset(seed=0)
    for t in range(STEPS):
        env.step(dict(zip(AGENTS, per_agent[t])))
        env.state()                     # what a generator or evaluate() also reads every step
        if not env.agents:
            env.reset()
    return STEPS


def markov_reward_gap(per_agent) -> tuple[np.ndarray, np.ndarray]:
    """Per-step and per-episode |reward| differences, forward_from='qpos' (default) vs 'xpos' (Ant-v5)."""
    envs = [ant.AntMultiAgentEnv(forward_from=f) for f in ("qpos", "xpos")]
    steps, episodes, ret, seed = [], [], 0.0, 0
    for e in envs:
        e.reset(seed=seed)
    for t in range(STEPS):
        a = dict(zip(AGENTS, per_agent[t]))
        r = [e.step(a)[1]["agent_0"] for e in envs]
        steps.append(r[0] - r[1])
        ret += r[0] - r[1]
        if not envs[0].agents:
            episodes.append(ret)
            ret, seed = 0.0, seed + 1
            for e in envs:
                e.reset(seed=seed)
    return np.abs(steps), np.abs(episodes)


def main() -> None:
    rng = np.random.default_rng(0)
    per_agent = rng.uniform(-1, 1, (STEPS, 4, 2)).astype(np.float32)
    domain = make("ant")
    joint = domain.join_actions(per_agent)            # Ant-v5's actuator order: the same torques
    rates = {"Ant-v5 (gym.make, 27-d)": best_of(lambda: plain_ant(gym.make(ant.GYM_ID, **ant.GYM_KWARGS), joint)),
             "Ant-v5 (unwrapped + TimeLimit)": best_of(lambda: plain_ant(
                 gym.wrappers.TimeLimit(gym.make(ant.GYM_ID, **ant.GYM_KWARGS).unwrapped, 1000), joint))}
    for setting in ("fo", "po"):
        env = make("ant", observation=setting).make_env()
        rates[f"four-agent {setting}"] = best_of(lambda: four_agent(env, per_agent))
    sim, env = domain.simulator(), domain.make_env(seed=0)
    states, qpos, qvel = [], [], []
    for t in range(BATCH):
        if not env.agents:
            env.reset()
        q, v = env.sim_state()
        states.append(env.state()), qpos.append(q), qvel.append(v)
        env.step(dict(zip(AGENTS, per_agent[t])))
    batch = (np.array(states), per_agent[:BATCH], np.array(qpos), np.array(qvel))
    rates[f"AntSimulator (B={BATCH})"] = best_of(lambda: len(sim.step(*batch).rewards))
    rates[f"foot_contacts (T={BATCH})"] = best_of(lambda: len(ant.foot_contacts(batch[2], batch[3])))

    base = rates["Ant-v5 (gym.make, 27-d)"]
    print(f"{'what':34s} {'steps/s':>10s} {'vs Ant-v5':>10s}")
    for name, r in rates.items():
        print(f"{name:34s} {r:10.0f} {r / base:9.2f}x")
    steps, episodes = markov_reward_gap(per_agent)
    print(f"\n|reward(forward_from='qpos') - reward(Ant-v5)| over {len(steps)} random-action steps: median "
          f"{np.median(steps):.1e}, 99th percentile {np.percentile(steps, 99):.1e}, max {steps.max():.2f}; "
          f"over {len(episodes)} episode returns: max {episodes.max():.2f}")


if __name__ == "__main__":
    main()
