"""MOMA-PPO: MAPPO trained on short rollouts of a learned world model (PAPER.md sections 3-4).

Barde et al., "A Model-Based Solution to the Offline Multi-Agent RL Coordination Problem",
AAMAS 2024, Algorithm 1. Each learning iteration

1. samples b start histories from the dataset (a dataset state with its real past, PAPER.md
   section 4; `momawb.datasets.AgentViews.history`);
2. rolls them out for at most k steps in a model env, batched over rollouts and agents:
   decentralised actions a^i ~ pi_i(.|h^i), one model step for the whole batch, reward
   ``r_bar - lambda_r eps_r - lambda_g eps_g`` (or MOPO's aleatoric penalty), a *timeout* at
   step k or the first time ``eps_g >= l_eps`` (tested before any clamping), terminals from the
   model's vote, histories slid with the agents' own (o, a) pairs;
3. computes timeout-aware GAE (section 3) over the (b, k) arrays with a k-step reverse scan;
4. runs the MAPPO update: joint ratio, clip, QMIX-style value, automatic entropy coefficient,
   action penalty.

Model envs (`momawb.model_env`): the learned world model (``mode="model"``), the ground-truth
simulator restarted from dataset states (``"simulator"``, Table 5), or the real env
(``"online"``: plain MAPPO on ``n_envs`` PettingZoo envs in lockstep, used to train the
Reacher expert teams). All three fill the same `Rollouts` (b, k) layout.

Borrowed: `moma_agents.MomaPPOAgents` (the networks: encoder and memory, policies, values,
mixer), `rollouts` (model and online collection), `model_env` (where rollouts step),
`loop.train_loop` (resume, NaN guard, tqdm, logs, eval), `evaluation.evaluate`.

Choices where the paper is silent, and deviations from the released code
(`reference/official-code-notes.md`):

* one batch of b rollouts per iteration (b = transitions_per_update / k by default); when
  rollouts end early the update sees fewer than 2000 transitions (the released code draws
  extra start states until it has 2000);
* eps_r and eps_g are clamped to l_eps only for the penalty, after the timeout test (the
  released code clamps first, so its adaptive rollouts never fire);
* value targets are the section-3 returns (bootstrapped only at timeouts); plain MSE value
  loss (no value clipping); the mixer sees the raw global state;
* the action penalty is taken on the policy mean (as the released code), weighted by
  max(ratio, clipped ratio); actions are clipped to ``action_bound`` before the env step and the
  unclipped sample is kept for log-probs and histories (as `evaluation.evaluate` does);
* entropy_target defaults to -4 (paper's Reacher value; -6 for Ant; released code -2). For
  discrete actions the joint entropy is always above such targets, so alpha stays 0;
* minibatch size 256 (paper) rather than the released code's 64;
* online mode keeps its envs across iterations; a resumed online run restarts them at fresh
  episodes (model and simulator runs resume bit-identically on CPU);
* opt-in stabilisers, all off by default (`MomaPPOConfig` "stabilisers"): running normalisation
  of observations and mixer states (``obs_norm``), standardised value targets (``value_norm``),
  a smaller initial mixer output (``mixer_init_scale``), a critic lr (``critic_lr``), per-group
  gradient clipping (``clip_per_group``) and an initial policy log-std below the clamp's upper
  edge (``init_log_std``). Online MAPPO on Reacher needs them (`momawb.generate`
  ``REACHER_EXPERT_STABILISERS``): on raw states the value loss swamps the policy under the global
  grad clip, and a log-std clamped at 0 gets no gradient.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from momawb.config import Config, ConfigError, param, register
from momawb.cuda_graphs import GraphedStep, use_graphs
from momawb.evaluation import evaluate
from momawb.model_env import OnDevice, SimulatorEnv
from momawb.moma_agents import MomaPPOAgents
from momawb.nets import AgentPolicy, PolicyTeam, clip_grad_norm_
from momawb.precision import PRECISIONS, adam
from momawb.rollouts import OnlineCollector, Rollouts, model_rollouts, sample_starts
from momawb.loop import iterate_minibatches, padded_minibatch, train_loop
from momawb.runs import Run, pick_device

__all__ = ["MomaPPOConfig", "MomaPPOAgents", "Rollouts", "sample_starts", "model_rollouts",
           "OnlineCollector", "timeout_gae", "ppo_loss", "MomaPPO", "train"]

MAX_LOG_RATIO = 20.0  # numerical guard on log(pi_new/pi_old) before exp (released code: 10)


# ============================================================================ config
@register("moma_ppo")
@dataclass
class MomaPPOConfig(Config):
    """MOMA-PPO / MAPPO. Defaults are the paper's values (PAPER.md section 3) unless noted."""

    # --- environment the agents learn in
    mode: str = param("model", "'model': learned world model; 'simulator': ground-truth simulator from "
                      "dataset states (Table 5); 'online': the real env (plain MAPPO)",
                      choices=("model", "simulator", "online"))
    # --- rollouts (Algorithm 1)
    horizon: int = param(10, "k, maximum model-rollout length (paper ablations: 5-50 equal)", ge=1)
    transitions_per_update: int = param(2000, "transitions generated between two MAPPO updates", ge=1)
    rollout_batch: int = param(0, "b, parallel rollouts per iteration; 0 = ceil(transitions_per_update / "
                               "horizon) = 200", ge=0)
    n_envs: int = param(10, "online mode: real envs stepped in lockstep (segment = transitions / n_envs)",
                        ge=1)
    lambda_r: float = param(0.05, "lambda_r, weight of eps_r (paper: not given; released code 0.05)", ge=0)
    lambda_g: float = param(0.1, "lambda_g, weight of eps_g (paper: not given; released code 0.1)", ge=0)
    l_eps: float = param(2.0, "l_eps: a rollout times out when eps_g >= l_eps; penalties are clamped to "
                         "it; 'inf' = no adaptive rollouts (released code default 2)", gt=0, allow_inf=True)
    penalty: str = param("epistemic", "'epistemic' (MOMA-PPO) or 'aleatoric' (MOPO, ablation)",
                         choices=("epistemic", "aleatoric"))
    aleatoric_coef: float = param(1.0, "MOPO penalty coefficient (ablation: 1 or 5)", ge=0)
    action_bound: float = param(1.0, "actions are clipped to +-bound before the env step; the action "
                                "penalty acts beyond it", gt=0)
    # --- networks
    hidden: tuple[int, ...] = param((256, 256), "hidden sizes of policy, per-agent value and mixer MLPs", ge=1)
    memory: bool = param(False, "attention memory over the last memory_length (o, a) pairs (section 4)")
    memory_length: int = param(10, "L, history length of the memory", ge=1)
    embed_dim: int = param(128, "e_h, memory embedding size (section 4)", ge=1)
    # --- optimisation
    steps: int = param(100_000, "learning iterations (rollouts + update); paper 1e5", ge=1)
    lr: float = param(5e-5, "Adam lr of policies, values and mixer (tuned on online halfcheetah)", gt=0)
    memory_lr: float = param(1e-4, "Adam lr of the memory module (section 4)", gt=0)
    gamma: float = param(0.99, "discount", ge=0, le=1)
    gae_lambda: float = param(0.98, "GAE lambda", ge=0, le=1)
    clip: float = param(0.2, "PPO ratio clip", gt=0)
    epochs: int = param(5, "passes over the rollouts per update", ge=1)
    batch_size: int = param(256, "minibatch size", ge=1)
    value_coef: float = param(0.5, "critic loss coefficient", ge=0)
    grad_clip: float = param(1.0, "global gradient-norm clip", gt=0)
    normalize_advantages: bool = param(True, "standardise advantages over the rollout buffer")
    entropy_target: float = param(-4.0, "target of the joint entropy estimate (paper: -4 Reacher, -6 Ant)")
    alpha_lr: float = param(1e-3, "step of alpha += alpha_lr * (target - entropy), alpha >= 0", ge=0)
    alpha_init: float = param(0.0, "initial entropy coefficient (released code: 0)", ge=0)
    action_penalty_coef: float = param(1.0, "weight of sum_dims max(|mean| - bound, 0)^2 (continuous)", ge=0)
    # --- stabilisers (opt-in; the defaults are the paper's plain MAPPO)
    obs_norm: bool = param(False, "normalise the agents' observations and the mixer's state by running mean/std "
                           "(updated after each MAPPO update; histories stay raw)")
    value_norm: bool = param(False, "the value nets predict returns standardised by running mean/std (MAPPO's "
                             "ValueNorm); GAE sees de-normalised values")
    norm_clip: float = param(10.0, "normalised observations and states are clipped to +-norm_clip", gt=0)
    mixer_init_scale: float = param(1.0, "scale of the mixer's initial last layer (w(s), b(s)); 1 = nn.Linear's",
                                    gt=0)
    init_log_std: float = param(0.0, "initial log-std of continuous policies (bias of the last layer); 0 = std 1, "
                                "the clamp's upper edge, where a log-std pushed above 0 gets no gradient", le=0)
    critic_lr: float = param(0.0, "Adam lr of the per-agent values and mixer; 0 = lr", ge=0)
    clip_per_group: bool = param(False, "clip the gradient norm of policies, critic (values + mixer) and memory "
                                 "separately (each to grad_clip) instead of globally")
    # --- evaluation, logging, checkpoints
    eval_every: int = param(50, "iterations between greedy evaluations in the real env (paper 50)", ge=0)
    eval_episodes: int = param(5, "episodes per periodic evaluation (paper 5)", ge=1)
    log_every: int = param(10, "iterations between metric rows", ge=0)
    checkpoint_every: int = param(500, "iterations between checkpoints", ge=0)
    device: str = param("auto", "'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1'")
    # speed (momawb.precision; opt-in, recorded in the run's config)
    precision: str = param("fp32", "'fp32'; 'bf16': the agents' encoder (the attention memory) under bfloat16 "
                           "autocast; 'tf32': TF32 matmuls on CUDA", choices=PRECISIONS)
    fused_adam: bool = param(False, "torch's fused (single-kernel) Adam: equal to rounding, faster")
    cuda_graph: bool = param(False, "on CUDA, each minibatch step (loss, backward, clipping, Adam, alpha) "
                             "replayed as a captured CUDA graph (momawb.cuda_graphs; needs fused_adam: true); "
                             "on CPU a no-op (eager steps), as tf32; "
                             "equal to eager to rounding")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cuda_graph and not self.fused_adam:
            raise ConfigError("MomaPPOConfig.cuda_graph = True needs fused_adam: true: a graph replays a fixed "
                              "sequence of GPU operations, so the optimiser step must keep its step count on the "
                              "GPU (torch's fused Adam with capturable=True); set fused_adam: true too, or "
                              "cuda_graph: false")
        if self.mode == "online" and self.transitions_per_update < self.n_envs:
            raise ConfigError(f"MomaPPOConfig: transitions_per_update={self.transitions_per_update} < n_envs="
                              f"{self.n_envs}; raise transitions_per_update or lower n_envs")

    @property
    def n_rollouts(self) -> int:
        """b: parallel model rollouts per iteration."""
        return self.rollout_batch or math.ceil(self.transitions_per_update / self.horizon)

    @property
    def segment_length(self) -> int:
        """Online mode: steps per env per iteration."""
        return max(1, self.transitions_per_update // self.n_envs)


# ============================================================================ GAE with timeouts
def timeout_gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor,
                not_terminal: torch.Tensor, not_timeout: torch.Tensor, gamma: float,
                lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns and advantages of PAPER.md section 3, vectorised over rollouts: all (b, k).

    At a timeout (tau = 0) the return bootstraps with V(s') and the advantage restarts from the
    TD error; at a terminal (f = 0) nothing flows back. A reverse scan over the k steps.
    """
    b, k = rewards.shape
    returns, advantages = torch.empty_like(rewards), torch.empty_like(rewards)
    ret = next_values[:, -1] * not_terminal[:, -1]
    adv = torch.zeros_like(ret)
    for t in range(k - 1, -1, -1):
        f, tau, v_next = not_terminal[:, t], not_timeout[:, t], next_values[:, t]
        ret = rewards[:, t] + gamma * f * (ret * tau + (1 - tau) * v_next * f)
        delta = rewards[:, t] + gamma * v_next * f - values[:, t]
        adv = delta + gamma * lam * adv * f * tau
        returns[:, t], advantages[:, t] = ret, adv
    return returns, advantages


# ============================================================================ MAPPO loss
def joint_log_prob(policy: AgentPolicy, dist, actions: torch.Tensor) -> torch.Tensor:
    """sum_i log pi_i(a^i | x^i): (B, N, act_dim) -> (B,)."""
    if policy.discrete:
        return dist.log_prob(actions[..., 0].long()).sum(-1)
    return dist.log_prob(actions).sum((-1, -2))


def ppo_loss(agents: MomaPPOAgents, mb: dict, alpha: float | torch.Tensor, cfg: MomaPPOConfig,
             weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MAPPO loss on one minibatch (section 3): clipped surrogate on the joint ratio, value MSE,
    -alpha H with H = min(E[-r log pi], E[-clip(r) log pi]), action penalty weighted by
    max(r, clip(r)). ``mb``: obs (B, N, O), hist, states (B, S), actions, old_logp, adv, returns
    (the value targets: standardised with ``value_norm``). ``weights`` (B,): every E[.] is a
    weighted mean (0 for padding rows, so a padded minibatch gives the unpadded loss to rounding)."""
    mean = torch.mean if weights is None else (lambda t: (t * weights).sum() / weights.sum())
    x = agents.features(mb["obs"], mb["hist"])
    dist = agents.policy.distribution(x)
    logp = joint_log_prob(agents.policy, dist, mb["actions"])
    log_ratio = (logp - mb["old_logp"]).clamp(max=MAX_LOG_RATIO)
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1 - cfg.clip, 1 + cfg.clip)
    policy_loss = -mean(torch.min(ratio * mb["adv"], clipped * mb["adv"]))
    entropy = torch.min(-mean(ratio * logp), -mean(clipped * logp))
    value_loss = mean((agents.value(x, mb["states"]) - mb["returns"]).pow(2))
    if agents.policy.discrete:
        action_pen = torch.zeros((), device=x.device)
    else:
        excess = (dist.mean.abs() - cfg.action_bound).clamp(min=0).pow(2).sum((-1, -2))   # (B,)
        action_pen = mean(torch.max(ratio, clipped) * excess)
    loss = policy_loss + cfg.value_coef * value_loss - alpha * entropy + cfg.action_penalty_coef * action_pen
    with torch.no_grad():
        stats = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
                 "action_penalty": action_pen, "approx_kl": mean((ratio - 1) - log_ratio),
                 "clip_frac": mean(((ratio - 1).abs() > cfg.clip).float())}
        stats = {k: v.detach() for k, v in stats.items()}
    return loss, stats


# ============================================================================ the algorithm
class MomaPPO:
    """Networks, the optimiser (memory at its own lr), alpha and counters; `update` = MAPPO."""

    def __init__(self, domain, cfg: MomaPPOConfig, device: torch.device):
        self.domain, self.cfg, self.device = domain, cfg, device
        self.agents = MomaPPOAgents(domain, cfg).to(device)
        memory = self.agents.encoder.memory
        mem_ids = {id(p) for p in memory.parameters()} if memory is not None else set()
        split = cfg.critic_lr > 0 or cfg.clip_per_group        # policies and critic in their own groups
        critic = self.agents.critic_parameters() if split else []
        own = mem_ids | {id(p) for p in critic}
        groups = [{"params": [p for p in self.agents.parameters() if id(p) not in own], "lr": cfg.lr}]
        if critic:
            groups.append({"params": critic, "lr": cfg.critic_lr or cfg.lr})
        if mem_ids:
            groups.append({"params": list(memory.parameters()), "lr": cfg.memory_lr})
        graphs = use_graphs(cfg.cuda_graph, device)
        self.opt = adam(groups, cfg.lr, cfg.fused_adam, capturable=graphs)
        if cfg.clip_per_group:
            self.param_sets = [g["params"] for g in self.opt.param_groups]
        else:
            self.param_sets = [[p for g in self.opt.param_groups for p in g["params"]]]
        self.graphed = GraphedStep(self._minibatch, max_graphs=1) if graphs else None
        self._mb_keys: list[str] = []
        self._stat_keys: list[str] = []
        self.alpha = float(cfg.alpha_init)
        self.iterations, self.transitions = 0, 0

    def state_dict(self) -> dict:
        return {"agents": self.agents.state_dict(), "opt": self.opt.state_dict(), "alpha": self.alpha,
                "iterations": self.iterations, "transitions": self.transitions}

    def load_state_dict(self, state: dict) -> None:
        self.agents.load_state_dict(state["agents"])
        self.opt.load_state_dict(state["opt"])
        if self.graphed is not None:
            self.graphed.reset()                      # new optimiser state tensors: capture again
        self.alpha, self.iterations, self.transitions = state["alpha"], state["iterations"], state["transitions"]

    @torch.no_grad()
    def _flatten(self, ro: Rollouts) -> dict:
        """Alive transitions with old values, returns and advantages, as flat (M, ...) tensors.

        Values are computed for alive rows only. x(s) is the encoder output the rollout computed
        for the policy (same parameters); x(s') is x of the next step where the rollout went on
        (s' and its history are that step's), so the encoder runs only for each rollout's last
        state."""
        b, k = ro.alive.shape
        flat = lambda t: None if t is None else t.reshape(b * k, *t.shape[2:])  # noqa: E731
        d, agents = self.domain, self.agents
        m = ro.alive.reshape(-1)
        states, next_states = flat(ro.states)[m], flat(ro.next_states)[m]
        hist = None if ro.hist is None else flat(ro.hist)[m]
        obs = d.observe(states)
        if ro.features is not None:   # x(s) from the rollout; x(s') = the next step's x where the rollout went on
            x = flat(ro.features)[m]
            on = ro.alive[:, 1:] & (ro.not_timeout[:, :-1] > 0) & (ro.not_terminal[:, :-1] > 0)   # s_{j+1} = s'_j
            went_on = torch.cat([on, torch.zeros_like(ro.alive[:, :1])], 1).reshape(-1)[m]
            x_next = flat(torch.cat([ro.features[:, 1:], ro.features[:, -1:]], 1))[m]   # a copy (mask indexing)
        else:
            x = agents.features(obs, hist)
            went_on = torch.zeros(len(states), dtype=torch.bool, device=states.device)
            x_next = torch.empty_like(x)
        last = ~went_on
        if last.any():
            nh = None if ro.next_hist is None else flat(ro.next_hist)[m][last]
            x_next[last] = agents.features(d.observe(next_states[last]), nh)
        values = torch.zeros(b * k, device=states.device)
        next_values = torch.zeros(b * k, device=states.device)
        values[m] = agents.returns(agents.value(x, states))
        next_values[m] = agents.returns(agents.value(x_next, next_states))
        values, next_values = values.reshape(b, k), next_values.reshape(b, k)
        returns, adv = timeout_gae(ro.rewards, values, next_values, ro.not_terminal, ro.not_timeout,
                                   self.cfg.gamma, self.cfg.gae_lambda)
        out = {"states": states, "obs": obs, "hist": hist,
               "actions": flat(ro.actions)[m], "old_logp": flat(ro.logp)[m], "returns": flat(returns)[m],
               "adv": flat(adv)[m], "values": flat(values)[m]}
        if self.cfg.normalize_advantages and len(out["adv"]) > 1:
            out["adv"] = (out["adv"] - out["adv"].mean()) / (out["adv"].std() + 1e-8)
        return out

    @torch.no_grad()
    def _update_normalizers(self, data: dict) -> None:
        """Merge this update's observations and states into the running input statistics."""
        if self.cfg.obs_norm:
            self.agents.encoder.obs_norm.update(data["obs"])
            self.agents.state_norm.update(data["states"])

    def update(self, ro: Rollouts, rng: np.random.Generator) -> dict[str, float]:
        """5 epochs of minibatch MAPPO on the rollouts; alpha steps after every minibatch.

        No host synchronisation between minibatches: alpha and the metric sums stay device
        tensors (float64, so the numbers equal a Python-float loop), each epoch's shuffle crosses
        to the device once, and the host reads alpha and the metrics once per update."""
        cfg, data = self.cfg, self._flatten(ro)
        n = len(data["states"])
        raw_returns = data["returns"]
        if self.agents.value_norm is not None:     # the value loss regresses standardised returns
            self.agents.value_norm.update(raw_returns)
            data["returns"] = self.agents.value_norm(raw_returns)
        alpha = torch.tensor(self.alpha, dtype=torch.float64, device=self.device)
        self._mb_keys = [key for key in data if key != "values" and data[key] is not None]
        step = self.graphed or self._minibatch
        sums, count = None, 0
        for _ in range(cfg.epochs):
            for idx_t in iterate_minibatches(n, cfg.batch_size, rng, self.device):
                weights = None
                if self.graphed is not None:      # a graph replays one shape: the partial minibatch is padded
                    idx_t, weights = padded_minibatch(idx_t, cfg.batch_size)
                alpha, row = step(alpha, weights, *(data[key][idx_t] for key in self._mb_keys))
                sums = row if sums is None else sums + row              # one sum for all the metrics
                count += 1
        self.alpha = float(alpha)
        self._update_normalizers(data)
        self.iterations += 1
        self.transitions += n
        ret, val = raw_returns, data["values"]
        var = ret.var() if n > 1 else ret.new_zeros(())
        ev = float(1 - (ret - val).var() / var) if n > 1 and var > 0 else 0.0
        means = [] if sums is None else (sums / count).tolist()
        out = {f"train/{k}": v for k, v in zip(self._stat_keys, means)}
        out.update({"train/alpha": self.alpha, "train/explained_variance": ev, "train/value_target": float(ret.mean()),
                    "train/transitions_total": float(self.transitions)})
        return out

    def _minibatch(self, alpha: torch.Tensor, weights: torch.Tensor | None,
                   *batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One minibatch step: `ppo_loss`, backward, clipping, Adam, then alpha's step towards the
        entropy target. ``batch``: the tensors named by ``self._mb_keys`` (B rows; ``hist`` is
        None when not among them); ``weights`` (B,) or None: `ppo_loss`'s; ``alpha`` () float64.
        Returns (alpha, the (7,) float64 metrics named by ``self._stat_keys``). Reads nothing back
        to the host (`momawb.cuda_graphs` can replay it)."""
        cfg = self.cfg
        mb = {"hist": None, **dict(zip(self._mb_keys, batch))}
        loss, stats = ppo_loss(self.agents, mb, alpha.float(), cfg, weights)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norms = [clip_grad_norm_(ps, cfg.grad_clip) for ps in self.param_sets]
        stats["grad_norm"] = norms[0] if len(norms) == 1 else torch.stack(norms).pow(2).sum().sqrt()
        self.opt.step()
        alpha = (alpha + cfg.alpha_lr * (cfg.entropy_target - stats["entropy"].double())).clamp(min=0.0)
        self._stat_keys = list(stats)
        return alpha, torch.stack([stats[key] for key in self._stat_keys]).double()


# ============================================================================ the loop
def train(config: MomaPPOConfig, dataset, domain, run: Run, *, progress: bool = True, world_model=None,
          **extra) -> PolicyTeam:
    """Train MOMA-PPO (or online MAPPO) and return the decentralised team.

    ``mode='model'`` needs ``world_model`` (``momawb.model_trainer.load_or_fit``); ``'simulator'``
    restarts ``domain.simulator()`` from dataset states; ``'online'`` needs no dataset.
    Resumes from ``run``'s checkpoint; logs every ``log_every`` iterations; evaluates greedily in
    the real env every ``eval_every`` iterations (``eval/score``).
    """
    if extra:
        raise TypeError(f"moma_ppo.train got unexpected argument(s) {sorted(extra)}")
    cfg = config
    device = run.device if cfg.device == "auto" else pick_device(cfg.device)
    if cfg.mode == "model":
        if world_model is None:
            raise ValueError("MOMA-PPO with mode='model' needs a learned world model: fit or load one with "
                             "momawb.model_trainer.load_or_fit(dataset, domain, WorldModelConfig(), run) and pass "
                             "train(..., world_model=wm); or set mode='simulator' (ground truth) or 'online'")
        env = world_model
    elif cfg.mode == "simulator":
        env = SimulatorEnv(domain, device)
    if cfg.mode != "online" and dataset is None:
        raise ValueError(f"mode={cfg.mode!r} starts rollouts from dataset states: pass a dataset "
                         "(or use mode='online')")
    algo = MomaPPO(domain, cfg, device)
    collector = OnlineCollector(domain, cfg, run.np_rng, device) if cfg.mode == "online" else None
    model_env = OnDevice(env, getattr(env, "device", device), device) if cfg.mode != "online" else None
    L = cfg.memory_length if cfg.memory else 0

    def update(step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        if collector is not None:
            ro = collector.collect(algo.agents)
        else:
            start = sample_starts(dataset, domain, cfg.n_rollouts, run.np_rng, device, L,
                                  with_sim_state=cfg.mode == "simulator")
            ro = model_rollouts(algo.agents, model_env, domain, start, cfg)
        t1 = time.perf_counter()
        metrics = {**ro.stats(), **algo.update(ro, run.np_rng)}
        t2 = time.perf_counter()
        metrics.update({"time/rollout_s": t1 - t0, "time/update_s": t2 - t1})
        if collector is not None:
            finished = collector.pop_episode_returns()
            if finished:
                metrics["online/episode_return"] = float(np.mean(finished))
        return metrics

    def evaluate_fn(step: int) -> dict[str, float]:
        return evaluate(algo.agents.team(), domain, episodes=cfg.eval_episodes, seed=10_101 + run.seed,
                        device=device).summary()

    train_loop(run, algo, cfg.steps, update, log_every=cfg.log_every, eval_every=cfg.eval_every,
               evaluate=evaluate_fn, checkpoint_every=cfg.checkpoint_every, desc=f"moma-ppo[{cfg.mode}]",
               progress=progress)
    return algo.agents.team()

