"""The centralised ensemble world model of MOMA-PPO (PAPER.md section 2).

N_m Gaussian MLP members map (global state s, joint action a) to a diagonal Gaussian over the
next state, a diagonal Gaussian over the reward and a Bernoulli "next state is terminal" logit.
The best N elites by validation error (mean of next-state and reward MSE on the held-out split)
answer `WorldModel.step`, which returns s_hat' (one elite drawn uniformly per sample), r_bar
(elite mean), f_bar (majority vote), eps_r (variance of elite rewards) and eps_g (Frobenius norm
of the elites' covariance of [s', r]), plus MOPO's aleatoric term.

Borrows `nets.StackedMLP` (members are stacked weights, one ``baddbmm`` per layer, shapes
``(E, B, D)``), `runs.train_loop` (resume, NaN guard, atomic checkpoints), `Dataset.split` and
`Domain.encode_actions` (one-hot for discrete actions).

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

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from momawb.config import Config, ConfigError, param, register
from momawb.datasets import Dataset, DatasetError
from momawb.model_env import StepOut
from momawb.nets import ACTIVATIONS, StackedMLP
from momawb.precision import PRECISIONS, adam, autocast
from momawb.runs import Run, atomic_torch_save, pick_device, train_loop

__all__ = ["WorldModelConfig", "GaussianEnsemble", "WorldModel", "EnsembleTrainer", "fit_world_model",
           "load_or_fit", "STEP_OPTIONS", "gaussian_nll", "ensemble_uncertainty", "majority_not_terminal"]

#: config fields that act only in `WorldModel.step` (not in fitting): a fitted model takes others (`with_options`)
STEP_OPTIONS = ("clip_state",)

_CHUNK = 16384   # rows per forward pass in evaluation / step (memory only; results do not depend on it)
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

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_elites > self.n_members:
            raise ConfigError(f"WorldModelConfig.n_elites = {self.n_elites} exceeds n_members = "
                              f"{self.n_members}; lower n_elites or raise n_members")
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


def _clip_member_grads(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip each member's gradient norm (axis 0 of every parameter) to ``max_norm``; (E,) norms."""
    norm = sum(p.grad.pow(2).flatten(1).sum(1) for p in params).sqrt()
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(scale.view(-1, *[1] * (p.dim() - 1)))
    return norm


# ----------------------------------------------------------------------------- data
def _inputs_targets(dataset: Dataset, domain) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw (inputs (M, S+A), next states (M, S), rewards (M,), terminals (M,)) as float tensors."""
    if len(dataset) == 0:
        raise DatasetError(f"{dataset.source}: the dataset is empty")
    if dataset.state_dim != domain.state_dim or dataset.actions.shape[1] != domain.joint_action_dim:
        raise DatasetError(f"{dataset.source}: states have {dataset.state_dim} coordinates and actions width "
                           f"{dataset.actions.shape[1]}, but domain {domain.name}/{domain.task} expects "
                           f"{domain.state_dim} and {domain.joint_action_dim}")
    acts = torch.as_tensor(domain.split_actions(dataset.actions))
    if domain.discrete:
        a = acts.numpy()
        if (a != np.round(a)).any() or a.min() < 0 or a.max() >= domain.n_actions:
            raise DatasetError(f"{dataset.source}: discrete actions must be integers in [0, {domain.n_actions})")
    x = torch.cat([torch.as_tensor(dataset.observations), domain.encode_actions(acts)], -1)
    return (x, torch.as_tensor(dataset.next_observations), torch.as_tensor(dataset.rewards),
            torch.as_tensor(dataset.terminals, dtype=torch.float32))


def _safe_std(x: torch.Tensor) -> torch.Tensor:
    std = x.std(0) if len(x) > 1 else torch.ones_like(x[0])
    return torch.where(std > 1e-6, std, torch.ones_like(std))


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
            for i in range(0, max(len(s), 1), _CHUNK):
                sc = s[i:i + _CHUNK]
                x = (torch.cat([sc, self.domain.encode_actions(a[i:i + _CHUNK])], -1) - st["in_mean"]) / st["in_std"]
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


# ----------------------------------------------------------------------------- training
class EnsembleTrainer:
    """Optimiser, data on device, best-weight snapshots and early-stopping state for `train_loop`."""

    def __init__(self, dataset: Dataset, domain, config: WorldModelConfig, run: Run, device: torch.device):
        self.cfg, self.run, self.device = config, run, device
        x, nxt, rew, term = _inputs_targets(dataset, domain)
        y = torch.cat([nxt - x[:, :domain.state_dim] if config.target == "delta" else nxt, rew[:, None]], -1)
        tr, va = dataset.split(config.val_fraction, seed=run.seed)
        if len(tr) == 0:
            raise DatasetError(f"{dataset.source}: no training transitions left after the validation split")
        tr, va = torch.as_tensor(tr), torch.as_tensor(va)
        # rows whose s' is not in the data (terminal rows of files without next_observations,
        # `Dataset.next_known`): in training their reward and terminal targets count, their state
        # target does not; target statistics and validation (state and reward errors) leave them out
        known = torch.as_tensor(dataset.next_known)
        self.known = None if dataset.next_observed is None else known[tr].to(device, torch.float32)
        ts, va = (tr, va) if dataset.next_observed is None else (tr[known[tr]], va[known[va]])
        if len(ts) == 0 or len(va) == 0:
            raise DatasetError(f"{dataset.source}: no {'training' if len(ts) == 0 else 'validation'} transition "
                               "has a known next state (next_observed), so the model has no state target")
        self.stats = {"in_mean": x[tr].mean(0), "in_std": _safe_std(x[tr]), "out_mean": y[ts].mean(0),
                      "out_std": _safe_std(y[ts]),
                      "state_lo": torch.minimum(x[:, :domain.state_dim].amin(0), nxt.amin(0)),
                      "state_hi": torch.maximum(x[:, :domain.state_dim].amax(0), nxt.amax(0)),
                      "reward_lo": rew.min(), "reward_hi": rew.max()}
        xn = ((x - self.stats["in_mean"]) / self.stats["in_std"]).to(device)
        yn = ((y - self.stats["out_mean"]) / self.stats["out_std"]).to(device)
        term = term.to(device)
        self.train = (xn[tr.to(device)], yn[tr.to(device)], term[tr.to(device)])
        self.val = (xn[va.to(device)], yn[va.to(device)], term[va.to(device)])
        self.ensemble = GaussianEnsemble(config.n_members, x.shape[1], domain.state_dim, config.hidden,
                                         config.activation, config.min_logvar, config.max_logvar).to(device)
        self.opt = adam(self.ensemble.parameters(), config.lr, config.fused_adam)
        self.best = {k: v.detach().clone() for k, v in self.ensemble.state_dict().items()}
        self.best_scores = torch.full((config.n_members,), float("inf"))
        self.bad_evals = 0
        self.generator = None
        if config.sampling == "device":
            self.generator = torch.Generator(device=device).manual_seed(int(run.np_rng.integers(2 ** 62)))

    def losses(self, x: torch.Tensor, y: torch.Tensor, d: torch.Tensor,
               known: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """(E, B, .) batch -> per-member (E,) loss terms (section 2: NLL of s' and r, BCE of d);
        ``known`` (E, B): 0 where s' is not in the data (no state target). The forward runs in the
        config's ``precision``; the losses in float32."""
        with autocast(self.cfg.precision, self.device):
            mean, logvar, logit = (t.float() for t in self.ensemble(x))
        return {"nll_state": gaussian_nll(mean[..., :-1], logvar[..., :-1], y[..., :-1], known),
                "nll_reward": gaussian_nll(mean[..., -1:], logvar[..., -1:], y[..., -1:]),
                "bce": F.binary_cross_entropy_with_logits(logit, d, reduction="none").mean(1)}

    def update(self, step: int) -> dict[str, float | torch.Tensor]:
        """One Adam step on every member's own minibatch. ``sampling='device'``: no host sync, the
        metrics stay tensors and a non-finite loss is stepped on (`runs.train_loop` stops the run
        at its next read, before any checkpoint); 'host': the step is skipped and the loop raises."""
        xs, ys, ds = self.train
        shape = (self.cfg.n_members, self.cfg.batch_size)                # own minibatch per member
        if self.generator is not None:
            idx = torch.randint(0, len(xs), shape, generator=self.generator, device=self.device)
        else:
            idx = torch.as_tensor(self.run.np_rng.integers(0, len(xs), shape), device=self.device)
        terms = self.losses(xs[idx], ys[idx], ds[idx], None if self.known is None else self.known[idx])
        ens = self.ensemble
        loss = sum(t.sum() for t in terms.values()) + self.cfg.logvar_bound_coef * (
            ens.max_logvar.sum() - ens.min_logvar.sum())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = _clip_member_grads(list(ens.parameters()), self.cfg.grad_clip)
        names = [f"train/{k}" for k in terms] + ["train/loss", "train/grad_norm"]
        values = torch.stack([t.mean() for t in terms.values()] + [loss, norm.mean()]).detach()
        if self.generator is not None:
            self.opt.step()
            return dict(zip(names, values))
        values = values.tolist()                                         # one sync
        if np.isfinite(values[-2]):
            self.opt.step()                                             # else no step: train_loop raises
        return dict(zip(names, values))

    @torch.no_grad()
    def validation(self) -> dict[str, torch.Tensor]:
        """Per-member (E,) validation MSE of the predicted means (state, reward) and NLL."""
        x, y, d = self.val
        e, sums = self.cfg.n_members, torch.zeros(3, self.cfg.n_members, device=self.device)
        for i in range(0, len(x), _CHUNK):
            xc, yc = x[i:i + _CHUNK].expand(e, -1, -1), y[i:i + _CHUNK].expand(e, -1, -1)
            mean, logvar, _ = self.ensemble(xc)
            n = xc.shape[1]
            sums += n * torch.stack([((mean - yc)[..., :-1] ** 2).mean((1, 2)), ((mean - yc)[..., -1] ** 2).mean(1),
                                     gaussian_nll(mean, logvar, yc)])
        mse_s, mse_r, nll = (sums / len(x)).cpu()
        return {"mse_state": mse_s, "mse_reward": mse_r, "nll": nll, "score": 0.5 * (mse_s + mse_r)}

    def evaluate(self, step: int) -> dict[str, float]:
        """Validate, keep each improved member's weights, update patience; logged under eval/."""
        v = self.validation()
        better = v["score"] < self.best_scores * (1 - self.cfg.improvement)
        better |= torch.isinf(self.best_scores)
        if better.any():
            mask = better.to(self.device)
            for k, p in self.ensemble.state_dict().items():
                self.best[k][mask] = p[mask]
            self.best_scores = torch.where(better, v["score"], self.best_scores)
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        elites = self.elites()
        out = {"val_nll": v["nll"].mean().item(), "val_mse_state": v["mse_state"].mean().item(),
               "val_mse_reward": v["mse_reward"].mean().item(), "bad_evals": float(self.bad_evals)}
        for m in range(self.cfg.n_members):
            out[f"val_score_m{m}"] = float(v["score"][m])
            out[f"elite_m{m}"] = float(m in elites)
        return out

    def elites(self) -> list[int]:
        return [int(i) for i in torch.argsort(self.best_scores, stable=True)[:self.cfg.n_elites]]

    def should_stop(self, step: int, metrics: dict) -> bool:
        return self.cfg.patience > 0 and self.bad_evals >= self.cfg.patience

    def state_dict(self) -> dict[str, Any]:
        out = {"ensemble": self.ensemble.state_dict(), "opt": self.opt.state_dict(), "best": self.best,
               "best_scores": self.best_scores, "bad_evals": self.bad_evals}
        if self.generator is not None:
            out["generator"] = self.generator.get_state()
        return out

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.ensemble.load_state_dict(s["ensemble"])
        self.opt.load_state_dict(s["opt"])
        self.best = {k: v.to(self.device) for k, v in s["best"].items()}
        self.best_scores, self.bad_evals = s["best_scores"].cpu(), int(s["bad_evals"])
        if self.generator is not None:
            self.generator.set_state(s["generator"].cpu())


def fit_world_model(dataset: Dataset, domain, config: WorldModelConfig, run: Run, *,
                    progress: bool = True) -> WorldModel:
    """Train the ensemble on ``dataset`` (resuming ``run``'s checkpoint), pick the elites and save
    ``<run.dir>/world_model.pt`` and ``world_model.json``.

    Logged: ``train/{loss,nll_state,nll_reward,bce,grad_norm}`` (member means) every
    ``log_every`` steps; ``eval/{val_nll,val_mse_state,val_mse_reward,bad_evals}``,
    ``eval/val_score_m<i>`` and ``eval/elite_m<i>`` (0/1) every ``eval_every`` steps.
    """
    device = run.device if config.device == "auto" else pick_device(config.device)
    trainer = EnsembleTrainer(dataset, domain, config, run, device)
    done = train_loop(run, trainer, config.steps, trainer.update, log_every=config.log_every,
                      eval_every=config.eval_every, evaluate=trainer.evaluate,
                      checkpoint_every=config.checkpoint_every, desc="world model", stop=trainer.should_stop,
                      progress=progress)
    if torch.isinf(trainer.best_scores).any():          # never validated (eval_every = 0)
        trainer.evaluate(done)
    trainer.ensemble.load_state_dict(trainer.best)
    elites = trainer.elites()
    meta = {"steps_done": done, "seed": run.seed, "val_fraction": config.val_fraction, "run": str(run.dir)}
    model = WorldModel(domain, config, trainer.ensemble, trainer.stats, elites, trainer.best_scores.tolist(),
                       device, meta)
    model.save(run.dir / MODEL_FILE)
    run.write_json("world_model.json", {"elites": elites, "val_scores": model.val_scores, **meta})
    return model


def load_or_fit(dataset: Dataset, domain, config: WorldModelConfig, run: Run, *,
                progress: bool = True) -> WorldModel:
    """The finished model of ``run`` when there is one, else `fit_world_model` (which resumes)."""
    path = run.dir / MODEL_FILE
    if path.exists():
        device = run.device if config.device == "auto" else pick_device(config.device)
        return WorldModel.load(path, domain, device)
    return fit_world_model(dataset, domain, config, run, progress=progress)
