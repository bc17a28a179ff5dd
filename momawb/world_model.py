"""The centralised ensemble world model of MOMA-PPO (PAPER.md section 2).

N_m Gaussian MLP members map (global state s, joint action a) to a diagonal Gaussian over the
next state, a diagonal Gaussian over the reward and a Bernoulli "next state is terminal" logit.
The best N elites by validation error (mean of next-state and reward MSE on the held-out split)
answer `WorldModel.step`, which returns s_hat' (one elite drawn uniformly per sample), r_bar
(elite mean), f_bar (majority vote), eps_r (variance of elite rewards) and eps_g (Frobenius norm
of the elites' covariance of [s', r]), plus MOPO's aleatoric term.

This module is the model (mbrl-lib's "model"): the config, the ensemble, its losses and
uncertainty estimates, and `WorldModel` (step, save, load). `momawb.model_trainer` fits it
(`fit_world_model`, `load_or_fit`) and `momawb.model_env` is what a policy steps through.
Borrows `nets.StackedMLP` (members are stacked weights, one ``baddbmm`` per layer, shapes
``(E, B, D)``) and `Domain.encode_actions` (one-hot for discrete actions).

Choices where the paper is silent, and departures from the released code (official-code-notes):
* targets are the state *delta* s' - s (MBPO/PETS) and the reward; ``target="absolute"``
  switches to s' (the released code). Inputs and targets are standardised with training-split
  statistics (the released code normalises nothing); a zero std (the game's constant state)
  is replaced by 1;
* one trunk per member with all heads on its last layer (the released code has separate T, R
  and mask networks); learned soft log-variance bounds (PETS, Chua et al. 2018 appendix A.1);
* one Adam over the stacked weights equals N_m independent Adams (Adam is elementwise); the
  gradient norm is clipped *per member*, as with the released code's per-member optimisers;
* each member draws its own minibatch with replacement every step (bootstrap-style);
* elites use the predicted means; each member keeps its best-validation weights and training
  stops early after ``patience`` evaluations without improvement (mbrl-lib's ModelTrainer);
* s_hat' is the chosen elite's *mean* (the released code does the same, it does not sample);
  f_bar says terminal only when strictly more than half of the elites predict p_d > 0.5;
* eps_r / eps_g are computed from unclipped predictions and are never clamped here: MOMA-PPO
  tests ``eps_g >= l_eps`` first (the released code clamps first, so its timeout never fires).
  eps_g uses the N x N Gram matrix: ||Xc^T Xc||_F = ||Xc Xc^T||_F, O(B N^2 D), no D x D matrix;
* aleatoric = max over elites of ||std of [s', r]||_2 in data units (MOPO; the released code
  uses the norm of the variances).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from momawb.config import Config, ConfigError, param, register
from momawb.model_env import StepOut
from momawb.nets import ACTIVATIONS, StackedMLP
from momawb.precision import PRECISIONS, autocast
from momawb.runs import atomic_torch_save, pick_device

__all__ = ["WorldModelConfig", "GaussianEnsemble", "WorldModel", "STEP_OPTIONS", "MODEL_FILE", "EVAL_CHUNK",
           "gaussian_nll", "ensemble_uncertainty", "majority_not_terminal"]

#: config fields that act only in `WorldModel.step` (not in fitting): a fitted model takes others (`with_options`)
STEP_OPTIONS = ("clip_state",)

EVAL_CHUNK = 16384   # rows per forward pass in evaluation / step (memory only; results do not depend on it)
MODEL_FILE = "world_model.pt"


@register("world_model")
@dataclass
class WorldModelConfig(Config):
    """World-model ensemble (PAPER.md section 2); defaults are the paper's values."""

    # networks
    n_members: int = param(7, "N_m, members trained (section 2)", ge=2)
    n_elites: int = param(5, "N, elites used by step() (section 2)", ge=2)
    hidden: tuple[int, ...] = param((1024, 1024, 1024, 1024), "hidden widths of each member (section 2)", ge=1)
    activation: str = param("relu", "hidden activation (released code: ReLU)", choices=tuple(ACTIVATIONS))
    target: str = param("delta", "predict s'-s ('delta', MBPO) or s' ('absolute', released code)",
                        choices=("delta", "absolute"))
    min_logvar: float = param(-10.0, "initial soft lower bound of the standardised log-variance (PETS)")
    max_logvar: float = param(0.5, "initial soft upper bound of the standardised log-variance (PETS)")
    logvar_bound_coef: float = param(0.01, "weight of (max_logvar - min_logvar) in the loss (PETS)", ge=0)
    # optimisation
    steps: int = param(3_000_000, "gradient steps (section 2: 3e6)", ge=1)
    batch_size: int = param(256, "minibatch per member (section 2)", ge=1)
    lr: float = param(3e-5, "Adam learning rate (section 2)", gt=0)
    grad_clip: float = param(1.0, "gradient-norm clip per member (section 2)", gt=0)
    # validation, elites, early stopping
    val_fraction: float = param(0.1, "held-out fraction for elites and early stopping (released code: 0.1)",
                                gt=0, lt=1)
    eval_every: int = param(5000, "steps between validations (0 = only at the end)", ge=0)
    patience: int = param(20, "stop after this many validations without improvement (0 = never)", ge=0)
    improvement: float = param(0.01, "relative drop of a member's validation error that counts", ge=0, lt=1)
    # state clipping (section 2 ablation), logging, device
    clip_state: bool = param(True, "clip s_hat' to the dataset's bounding box (section 2; ablation switch)")
    log_every: int = param(1000, "steps between logged training rows", ge=0)
    checkpoint_every: int = param(10000, "steps between checkpoints", ge=0)
    device: str = param("auto", "'auto' (the run's device), 'cpu', 'cuda', 'cuda:1', ...")
    # speed (momawb.precision; opt-in, recorded in the run's config)
    precision: str = param("fp32", "'fp32'; 'bf16': forward passes under bfloat16 autocast (training and "
                           "step; validation stays fp32); 'tf32': TF32 matmuls on CUDA", choices=PRECISIONS)
    fused_adam: bool = param(False, "torch's fused (single-kernel) Adam: equal to rounding, faster")
    sampling: str = param("host", "'host': numpy draws each step's minibatch indices (the numbers of every "
                          "table); 'device': torch draws them on the data's device and a step reads nothing "
                          "back (no host sync; another random stream, saved in checkpoints)",
                          choices=("host", "device"))
    cuda_graph: bool = param(False, "on CUDA, each update replayed as one captured CUDA graph (momawb.cuda_graphs; "
                             "needs sampling: device and fused_adam: true); the eager step's numbers, faster; "
                             "on CPU a no-op (eager steps), as tf32")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_elites > self.n_members:
            raise ConfigError(f"WorldModelConfig.n_elites = {self.n_elites} exceeds n_members = "
                              f"{self.n_members}; lower n_elites or raise n_members")
        if self.cuda_graph and (self.sampling != "device" or not self.fused_adam):
            missing = [k for k, ok in (("sampling: device", self.sampling == "device"),
                                       ("fused_adam: true", self.fused_adam)) if not ok]
            raise ConfigError(f"WorldModelConfig.cuda_graph = True needs {' and '.join(missing)} (got sampling="
                              f"{self.sampling!r}, fused_adam={self.fused_adam}): a graph replays a fixed "
                              "sequence of GPU operations, so the minibatch indices must be drawn on the GPU, "
                              "and the optimiser step must keep its step count on the GPU (torch's fused Adam "
                              "with capturable=True); set those, or cuda_graph: false")
        if self.min_logvar >= self.max_logvar:
            raise ConfigError(f"WorldModelConfig.min_logvar = {self.min_logvar} must be < max_logvar = "
                              f"{self.max_logvar}")


# ----------------------------------------------------------------------------- network
class GaussianEnsemble(nn.Module):
    """E members: ``x (E, B, in) -> mean (E, B, S+1), logvar (E, B, S+1), logit (E, B)``.

    The S+1 outputs are the (standardised) next-state target and the reward; ``logit`` is the
    terminal logit. Log-variances are soft-bounded by learned per-member bounds.
    """

    def __init__(self, n: int, in_dim: int, state_dim: int, hidden: tuple[int, ...], activation: str,
                 min_logvar: float, max_logvar: float):
        super().__init__()
        self.n, self.in_dim, self.out = n, in_dim, state_dim + 1
        self.hidden, self.activation = tuple(hidden), activation
        self.net = StackedMLP(n, in_dim, 2 * self.out + 1, self.hidden, activation)
        self.min_logvar = nn.Parameter(torch.full((n, 1, self.out), float(min_logvar)))
        self.max_logvar = nn.Parameter(torch.full((n, 1, self.out), float(max_logvar)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self.net(x)
        mean, raw, logit = y[..., :self.out], y[..., self.out:2 * self.out], y[..., -1]
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar, logit

    def subset(self, members: list[int]) -> "GaussianEnsemble":
        """A frozen copy holding only ``members`` (e.g. the elites), in that order."""
        sub = GaussianEnsemble(len(members), self.in_dim, self.out - 1, self.hidden, self.activation, -1.0, 0.0)
        idx = torch.as_tensor(members, device=self.min_logvar.device)
        sub.load_state_dict({k: v.detach()[idx] for k, v in self.state_dict().items()})
        return sub.to(self.min_logvar.device).requires_grad_(False)


# ----------------------------------------------------------------------------- losses
def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """(E, B, D) each -> (E,) Gaussian NLL without the constant, averaged over B and D; with
    ``weight`` (E, B) of 0/1, averaged over the rows of weight 1 only."""
    nll = 0.5 * ((target - mean) ** 2 * torch.exp(-logvar) + logvar)
    if weight is None:
        return nll.mean((1, 2))
    return (nll.mean(2) * weight).sum(1) / weight.sum(1).clamp(min=1)


def ensemble_uncertainty(next_states: torch.Tensor, rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, B, S) and (N, B) predictions of N members -> eps_r (B,), eps_g (B,) (section 2).

    eps_r: sample variance of the rewards (N-1). eps_g: ||C||_F with C the (N-1) sample
    covariance of x_m = [s'_m, r_m], from the N x N Gram matrix (never a D x D one).
    """
    n = rewards.shape[0]
    if rewards.numel() == 0:                                                 # B = 0
        return rewards.new_zeros(rewards.shape[1:]), rewards.new_zeros(rewards.shape[1:])
    eps_r = rewards.var(0, correction=1)
    x = torch.cat([next_states, rewards[..., None]], -1).transpose(0, 1)     # (B, N, D)
    xc = x - x.mean(1, keepdim=True)
    gram = xc @ xc.transpose(1, 2)                                           # (B, N, N)
    return eps_r, torch.linalg.matrix_norm(gram) / (n - 1)


def majority_not_terminal(p_terminal: torch.Tensor) -> torch.Tensor:
    """(N, B) terminal probabilities -> (B,) bool f_bar: terminal iff > N/2 members vote p > 0.5."""
    votes = (p_terminal > 0.5).sum(0)
    return 2 * votes <= p_terminal.shape[0]


# ----------------------------------------------------------------------------- model
class WorldModel:
    """A trained ensemble with its normalisation statistics, dataset bounds and elites.

    ``stats``: in_mean/in_std (S+A,), out_mean/out_std (S+1,), state_lo/state_hi (S,),
    reward_lo/reward_hi (scalars). ``elites``: member indices, best first. ``device``: where it
    predicts (default: where ``ensemble`` is); inputs of `step`/`predict` are moved there.
    """

    def __init__(self, domain, config: WorldModelConfig, ensemble: GaussianEnsemble, stats: dict,
                 elites: list[int], val_scores: list[float], device: torch.device | str | None = None,
                 meta: dict | None = None):
        self.domain, self.config = domain, config
        self.device = torch.device(device) if device is not None else ensemble.min_logvar.device
        self.ensemble = ensemble.to(self.device).requires_grad_(False)
        self.stats = {k: torch.as_tensor(v, dtype=torch.float32, device=self.device) for k, v in stats.items()}
        self.elites, self.val_scores = [int(i) for i in elites], [float(v) for v in val_scores]
        self.meta = dict(meta or {})
        self._elite_net = self.ensemble.subset(self.elites)

    def with_options(self, **options: Any) -> "WorldModel":
        """The same fitted model (shared weights) with other step-time options (`STEP_OPTIONS`,
        e.g. ``clip_state=False`` for the no-clipping ablation). Raises ValueError for others."""
        bad = sorted(set(options) - set(STEP_OPTIONS))
        if bad:
            raise ValueError(f"{bad} change what was fitted; only {STEP_OPTIONS} can differ from a fitted model")
        if all(getattr(self.config, k) == v for k, v in options.items()):
            return self
        return WorldModel(self.domain, self.config.replace(**options), self.ensemble, self.stats, self.elites,
                          self.val_scores, self.device, self.meta)

    def identity(self) -> dict:
        """What a policy trained in this model depends on: the fitted run (its folder name holds the
        hash of the fitted config) and the step-time options. MOMA-PPO runs key on it."""
        fitted = Path(str(self.meta["run"])).name if self.meta.get("run") else self.config.to_dict()
        return {"fitted": fitted, **{k: getattr(self.config, k) for k in STEP_OPTIONS}}

    # ------------------------------------------------------------------ prediction
    def _check(self, states, actions) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.domain
        states = torch.as_tensor(states, dtype=torch.float32, device=self.device)
        actions = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        if states.dim() != 2 or states.shape[1] != d.state_dim:
            raise ValueError(f"states must be (B, {d.state_dim}) for {d.name}/{d.task}, got {tuple(states.shape)}")
        if actions.shape != (states.shape[0], d.n_agents, d.act_dim):
            raise ValueError(f"actions must be (B={states.shape[0]}, n_agents={d.n_agents}, act_dim={d.act_dim})"
                             f" for {d.name}/{d.task}, got {tuple(actions.shape)}")
        return states, actions

    def predict(self, states, actions, members: str = "elites") -> dict[str, torch.Tensor]:
        """Per-member predictions in data units: next_states (E, B, S), rewards (E, B),
        std (E, B, S+1), p_terminal (E, B); ``members`` is 'elites' or 'all'."""
        if members not in ("elites", "all"):
            raise ValueError(f"members must be 'elites' or 'all', got {members!r}")
        s, a = self._check(states, actions)
        net = self._elite_net if members == "elites" else self.ensemble
        st, out = self.stats, []
        with torch.no_grad():
            for i in range(0, max(len(s), 1), EVAL_CHUNK):
                sc, ac = s[i:i + EVAL_CHUNK], a[i:i + EVAL_CHUNK]
                x = (torch.cat([sc, self.domain.encode_actions(ac)], -1) - st["in_mean"]) / st["in_std"]
                with autocast(self.config.precision, self.device):
                    mean, logvar, logit = (t.float() for t in net(x.expand(net.n, *x.shape)))
                y = mean * st["out_std"] + st["out_mean"]
                nxt = y[..., :-1] + (sc if self.config.target == "delta" else 0.0)
                out.append((nxt, y[..., -1], torch.exp(0.5 * logvar) * st["out_std"], torch.sigmoid(logit)))
        keys = ("next_states", "rewards", "std", "p_terminal")
        return {k: torch.cat([o[j] for o in out], 1) for j, k in enumerate(keys)}

    def step(self, states: torch.Tensor, actions: torch.Tensor,
             generator: torch.Generator | None = None) -> StepOut:
        """One batched model step M(s, a) (section 2): states (B, S), actions (B, N_agents, act_dim)."""
        p = self.predict(states, actions)
        nxt, rew = p["next_states"], p["rewards"]
        n, b = rew.shape
        eps_r, eps_g = ensemble_uncertainty(nxt, rew)
        gdev = generator.device if generator is not None else self.device
        pick = torch.randint(n, (b,), generator=generator, device=gdev).to(self.device)
        s_next = nxt[pick, torch.arange(b, device=self.device)]
        if self.config.clip_state:
            raw = s_next
            s_next = torch.minimum(torch.maximum(s_next, self.stats["state_lo"]), self.stats["state_hi"])
            clipped = (s_next != raw).float().mean(-1)
        else:
            clipped = torch.zeros(b, device=self.device)
        r_bar = rew.mean(0).clamp(self.stats["reward_lo"], self.stats["reward_hi"])
        return StepOut(s_next, r_bar, majority_not_terminal(p["p_terminal"]), eps_r, eps_g,
                       p["std"].norm(dim=-1).amax(0), clipped)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Weights, normalisation statistics, bounds, elites and config in one atomic file."""
        d = self.domain
        blob = {"format": "momawb.world_model/1", "config": self.config.to_dict(),
                "ensemble": {k: v.cpu() for k, v in self.ensemble.state_dict().items()},
                "stats": {k: v.cpu() for k, v in self.stats.items()}, "elites": self.elites,
                "val_scores": self.val_scores, "meta": self.meta,
                "domain": {"name": d.name, "task": d.task, "state_dim": d.state_dim, "n_agents": d.n_agents,
                           "act_dim": d.act_dim, "n_actions": d.n_actions}}
        atomic_torch_save(blob, Path(path))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, domain=None, device: str | torch.device | None = None) -> "WorldModel":
        """Inverse of `save`; ``domain`` defaults to ``domains.make(name)`` of the saved domain."""
        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
        sd = blob["domain"]
        if domain is None:
            from momawb.domains import make
            domain = make(sd["name"])
            if domain.task != sd["task"]:
                raise ValueError(f"{path} was trained on {sd['name']}/{sd['task']}; pass that domain as domain=")
        got = {k: getattr(domain, k) for k in ("state_dim", "n_agents", "act_dim", "n_actions")}
        if any(got[k] != sd[k] for k in got):
            raise ValueError(f"{path} was trained on {sd} but domain {domain.name}/{domain.task} has {got}")
        cfg = WorldModelConfig(**blob["config"])
        ens = GaussianEnsemble(cfg.n_members, domain.state_dim + domain.model_action_dim, domain.state_dim,
                               cfg.hidden, cfg.activation, cfg.min_logvar, cfg.max_logvar)
        ens.load_state_dict(blob["ensemble"])
        return cls(domain, cfg, ens, blob["stats"], blob["elites"], blob["val_scores"],
                   pick_device(device), blob["meta"])
