"""Fitting the world model (mbrl-lib's "model trainer"; the model is `momawb.world_model`).

`EnsembleTrainer` holds the optimiser, the standardised data on the device, each member's
best-validation weights and the early-stopping state; `fit_world_model` runs it through
`loop.train_loop` (resume, NaN guard, atomic checkpoints) and saves the `WorldModel`;
`load_or_fit` returns a run's finished model or fits it. The training choices (delta targets,
standardisation, per-member minibatches and gradient clipping, best-weight snapshots and
patience) are listed in `momawb.world_model`'s docstring.
"""
from __future__ import annotations

import hashlib
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from momawb.cuda_graphs import GraphedStep, use_graphs
from momawb.datasets import Dataset, DatasetError
from momawb.precision import adam, autocast
from momawb.loop import train_loop
from momawb.runs import Run, pick_device
from momawb.world_model import EVAL_CHUNK, MODEL_FILE, GaussianEnsemble, WorldModel, WorldModelConfig, gaussian_nll

__all__ = ["EnsembleTrainer", "fit_world_model", "load_or_fit"]

LOSS_TERMS = ("nll_state", "nll_reward", "bce")     # `EnsembleTrainer.losses`, in this order
METRICS = tuple(f"train/{k}" for k in (*LOSS_TERMS, "loss", "grad_norm"))   # `EnsembleTrainer.update`'s


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


# ----------------------------------------------------------------------------- trainer
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
        graphs = use_graphs(config.cuda_graph, device)
        self.opt = adam(self.ensemble.parameters(), config.lr, config.fused_adam, capturable=graphs)
        self.graphed = GraphedStep(self._step, max_graphs=1) if graphs else None
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
        terms = (gaussian_nll(mean[..., :-1], logvar[..., :-1], y[..., :-1], known),
                 gaussian_nll(mean[..., -1:], logvar[..., -1:], y[..., -1:]),
                 F.binary_cross_entropy_with_logits(logit, d, reduction="none").mean(1))
        return dict(zip(LOSS_TERMS, terms))

    def update(self, step: int) -> dict[str, float | torch.Tensor]:
        """One Adam step on every member's own minibatch. ``sampling='device'``: no host sync, the
        metrics stay tensors and a non-finite loss is stepped on (`loop.train_loop` stops the run
        at its next read, before any checkpoint); 'host': the step is skipped and the loop raises.
        ``cuda_graph`` on CUDA: the step (after the index draw) is a replayed CUDA graph."""
        n, shape = len(self.train[0]), (self.cfg.n_members, self.cfg.batch_size)   # own minibatch per member
        if self.generator is not None:
            idx = torch.randint(0, n, shape, generator=self.generator, device=self.device)
            values = self.graphed(idx) if self.graphed is not None else self._step(idx)
            return dict(zip(METRICS, values))
        idx = torch.as_tensor(self.run.np_rng.integers(0, n, shape), device=self.device)
        values = self._step(idx, apply=False).tolist()                  # one sync
        if np.isfinite(values[-2]):
            self.opt.step()                                             # else no step: train_loop raises
        return dict(zip(METRICS, values))

    def _step(self, idx: torch.Tensor, apply: bool = True) -> torch.Tensor:
        """Loss, backward, per-member clipping and (``apply``) the Adam step on rows ``idx``
        (E, B); the (5,) metrics: the three loss terms, the loss and the mean gradient norm."""
        xs, ys, ds = self.train
        terms = self.losses(xs[idx], ys[idx], ds[idx], None if self.known is None else self.known[idx])
        ens = self.ensemble
        loss = sum(t.sum() for t in terms.values()) + self.cfg.logvar_bound_coef * (
            ens.max_logvar.sum() - ens.min_logvar.sum())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = _clip_member_grads(list(ens.parameters()), self.cfg.grad_clip)
        if apply:
            self.opt.step()
        return torch.stack([t.mean() for t in terms.values()] + [loss, norm.mean()]).detach()

    @torch.no_grad()
    def validation(self) -> dict[str, torch.Tensor]:
        """Per-member (E,) validation MSE of the predicted means (state, reward) and NLL."""
        x, y, d = self.val
        e, sums = self.cfg.n_members, torch.zeros(3, self.cfg.n_members, device=self.device)
        for i in range(0, len(x), EVAL_CHUNK):
            xc, yc = x[i:i + EVAL_CHUNK].expand(e, -1, -1), y[i:i + EVAL_CHUNK].expand(e, -1, -1)
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
            out["generator"], out["generator_device"] = self.generator.get_state(), self.device.type
        return out

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.ensemble.load_state_dict(s["ensemble"])
        self.opt.load_state_dict(s["opt"])             # new state tensors: capture again
        if self.graphed is not None:
            self.graphed.reset()
        self.best = {k: v.to(self.device) for k, v in s["best"].items()}
        self.best_scores, self.bad_evals = s["best_scores"].cpu(), int(s["bad_evals"])
        if self.generator is not None:
            state, saved_on = s["generator"].cpu(), s.get("generator_device", self.device.type)
            if saved_on == self.device.type:
                self.generator.set_state(state)
            else:       # CPU and CUDA generators are different algorithms: a stream cannot cross over
                self.generator.manual_seed(int.from_bytes(hashlib.sha256(state.numpy().tobytes()).digest()[:8],
                                                          "little") >> 1)
                warnings.warn(f"world model {self.run.dir.name}: its minibatch generator (sampling: device) was "
                              f"saved on {saved_on} and resumes on {self.device.type}; that stream cannot continue "
                              "on another device type, so a new one seeded from the saved state takes over")


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
