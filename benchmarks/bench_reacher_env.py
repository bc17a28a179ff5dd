"""Steps/s of the two-agent Reacher env against plain Reacher-v5, and of the batched simulator.

Prints ratios, asserts nothing. Times are this process's CPU time (steadier on a shared machine).
Short on purpose (about 10 s): ``python benchmarks/bench_reacher_env.py``.
"""
from __future__ import annotations

import time

import gymnasium as gym
import numpy as np

from momawb.domains import make

STEPS = 5_000          # env steps per measurement
BATCH = 2_000          # simulator transitions per call


def best_of(fn, repeats: int = 3) -> float:
    """Items per second of the fastest of ``repeats`` calls; ``fn`` returns its item count."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.process_time()
        n = fn()
        best = max(best, n / (time.process_time() - t0))
    return best


def plain_reacher(env, actions) -> int:
    env.reset(seed=0)
    for t in range(STEPS):
        _, _, term, trunc, _ = env.step(actions[t])
        if term or trunc:
            env.reset()
    return STEPS


def two_agent(env, actions) -> int:
    env.reset(seed=0)
    for t in range(STEPS):
        env.step({"agent_0": actions[t, :1], "agent_1": actions[t, 1:]})
        env.state()                     # what a generator or evaluate() also reads every step
        if not env.agents:
            env.reset()
    return STEPS


def main() -> None:
    actions = np.random.default_rng(0).uniform(-1, 1, (STEPS, 2)).astype(np.float32)
    rates = {"Reacher-v5 (gym.make)": best_of(lambda: plain_reacher(gym.make("Reacher-v5"), actions)),
             "Reacher-v5 (unwrapped + TimeLimit)": best_of(lambda: plain_reacher(
                 gym.wrappers.TimeLimit(gym.make("Reacher-v5").unwrapped, 50), actions))}
    for setting in ("fo", "independent", "leader"):
        env = make("reacher", observation=setting).make_env()
        rates[f"two-agent {setting}"] = best_of(lambda: two_agent(env, actions))
    domain = make("reacher")
    sim, env = domain.simulator(), domain.make_env(seed=0)
    states, qpos, qvel = [], [], []
    for t in range(BATCH):
        if not env.agents:
            env.reset()
        q, v = env.sim_state()
        states.append(env.state()), qpos.append(q), qvel.append(v)
        env.step({"agent_0": actions[t, :1], "agent_1": actions[t, 1:]})
    batch = (np.array(states), actions[:BATCH, :, None], np.array(qpos), np.array(qvel))
    rates[f"ReacherSimulator (B={BATCH})"] = best_of(lambda: len(sim.step(*batch).rewards))

    base = rates["Reacher-v5 (gym.make)"]
    print(f"{'what':34s} {'steps/s':>10s} {'vs Reacher-v5':>14s}")
    for name, r in rates.items():
        print(f"{name:34s} {r:10.0f} {r / base:13.2f}x")


if __name__ == "__main__":
    main()
