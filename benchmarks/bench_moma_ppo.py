"""MOMA-PPO speed: batched model rollouts vs a Python loop over rollouts and agents.

Prints model-rollout transitions/s of `momawb.moma_ppo.model_rollouts` (one policy forward and
one ensemble step per rollout step for all b rollouts x agents x elites) for b = 200 .. 2000,
4 agents, 5 elites, against the released code's style (a Python loop over rollouts, and over
agents and ensemble members inside each step, measured on a subset of rollouts; the cost is
linear in b), and the share of one learning iteration spent in rollouts vs the MAPPO update.

The ensemble is a stand-in (`StandInModel`: stacked MLP members, eps_r / eps_g from the
elites as in PAPER.md section 2) so the benchmark runs without a trained world model.
``python benchmarks/bench_moma_ppo.py [--quick] [--hidden 256] [--device cpu]``
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from momawb.domains import Domain
from momawb.model_env import StepOut
from momawb.moma_ppo import MomaPPO, MomaPPOConfig, Rollouts, model_rollouts
from momawb.nets import StackedMLP

N_AGENTS, ACT, STATE, ELITES = 4, 2, 27, 5


def ant_like_domain() -> Domain:
    """4 agents seeing the whole 27-d state (Ant FO-sized), 2 action dims each."""
    idx = np.tile(np.arange(STATE), (N_AGENTS, 1))
    return Domain("bench", "ant-fo-like", N_AGENTS, STATE, idx, ACT, None, 1000, (0.0, 1.0))


class StandInModel:
    """E stacked MLP members -> mean next state and reward; one elite per sample; eps from elites."""

    def __init__(self, hidden: tuple[int, ...], device: torch.device):
        self.net = StackedMLP(ELITES, STATE + N_AGENTS * ACT, STATE + 1, hidden).to(device)
        self.device = device

    @torch.no_grad()
    def step(self, states, actions, generator=None) -> StepOut:
        x = torch.cat([states, actions.flatten(-2)], -1)
        y = self.net(x.expand(ELITES, *x.shape))                      # (E, B, S+1)
        nxt, rew = states + 0.01 * y[..., :-1], y[..., -1]
        xc = y - y.mean(0)
        gram = torch.einsum("ebd,fbd->bef", xc, xc) / (ELITES - 1)    # ||Cov||_F via the E x E Gram
        eps_g = gram.flatten(1).norm(dim=-1)
        pick = torch.randint(ELITES, (len(states),), device=states.device)
        s_next = nxt[pick, torch.arange(len(states), device=states.device)]
        return StepOut(s_next, rew.mean(0), torch.ones(len(states), dtype=torch.bool, device=states.device),
                       rew.var(0), eps_g, torch.zeros(len(states), device=states.device))


@torch.no_grad()
def loop_rollouts(algo: MomaPPO, model: StandInModel, domain: Domain, states: torch.Tensor, k: int) -> int:
    """Released-code style: per rollout, per step, per agent policy call, per member model call."""
    pol, enc = algo.agents.policy, algo.agents.encoder
    n_done = 0
    for s in states:                                   # loop over rollouts
        s = s[None]
        for _ in range(k):
            obs = domain.observe(s)
            acts = []
            for i in range(domain.n_agents):           # loop over agents
                layers = pol.net.net.layers
                h = enc(obs)[:, i]
                for j, layer in enumerate(layers):
                    h = torch.addmm(layer.bias[i], h, layer.weight[i])
                    h = torch.relu(h) if j < len(layers) - 1 else h
                mean, log_std = h.split(domain.act_dim, -1)
                acts.append(mean + log_std.clamp(-6, 0).exp() * torch.randn_like(mean))
            x = torch.cat([s, torch.cat(acts, -1)], -1)
            outs = []
            for m in range(ELITES):                    # loop over ensemble members
                h = x
                for j, layer in enumerate(model.net.layers):
                    h = torch.addmm(layer.bias[m], h, layer.weight[m])
                    h = torch.relu(h) if j < len(model.net.layers) - 1 else h
                outs.append(h)
            y = torch.stack(outs)
            s = s + 0.01 * y[int(torch.randint(ELITES, ())), :, :-1]
            n_done += 1
    return n_done


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repeats (shared machines)")
    ap.add_argument("--hidden", type=int, default=256, help="width of the stand-in ensemble (paper 1024)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    dom = ant_like_domain()
    model = StandInModel((args.hidden,) * 4, dev)
    sizes = [200, 1000] if args.quick else [200, 500, 1000, 2000]
    loop_b = 10 if args.quick else 25
    k = 10
    print(f"device {dev}, {N_AGENTS} agents, {ELITES} elites, stand-in ensemble 4x{args.hidden}, k = {k}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'b':>6} {'batched tr/s':>14} {'loop tr/s':>12} {'ratio':>8}")
    for b in sizes:
        cfg = MomaPPOConfig(rollout_batch=b, horizon=k, l_eps="inf", device=args.device)
        algo = MomaPPO(dom, cfg, dev)
        start = {"states": torch.randn(b, STATE, device=dev), "hist": None, "qpos": None, "qvel": None}
        t_batched = timed(lambda: model_rollouts(algo.agents, model, dom, start, cfg), 1 if args.quick else 2)
        sub = start["states"][:loop_b]
        t_loop = timed(lambda: loop_rollouts(algo, model, dom, sub, k))
        tb, tl = b * k / t_batched, loop_b * k / t_loop
        print(f"{b:>6} {tb:>14.0f} {tl:>12.0f} {tb / tl:>7.1f}x")

    # one learning iteration at the paper's sizes: b = 200 rollouts x k = 10, 5 epochs of batch 256
    cfg = MomaPPOConfig(horizon=k, l_eps="inf", device=args.device)
    algo = MomaPPO(dom, cfg, dev)
    rng = np.random.default_rng(0)
    start = {"states": torch.randn(cfg.n_rollouts, STATE, device=dev), "hist": None, "qpos": None, "qvel": None}
    ro: list[Rollouts] = []
    t_roll = timed(lambda: ro.append(model_rollouts(algo.agents, model, dom, start, cfg)))
    t_upd = timed(lambda: algo.update(ro[-1], rng))
    total = t_roll + t_upd
    print(f"one iteration (b={cfg.n_rollouts}, k={k}, hidden {cfg.hidden}): rollout {t_roll:.3f}s "
          f"({100 * t_roll / total:.0f}%), update {t_upd:.3f}s ({100 * t_upd / total:.0f}%)")


if __name__ == "__main__":
    main()
