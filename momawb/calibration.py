"""Is the world model's epistemic uncertainty eps_g a good error signal? (PAPER.md section 2)

`calibration` puts eps_g beside the model's real prediction error: on held-out dataset
transitions (one step), and on k-step open-loop model rollouts replayed against a ground-truth
simulator when the domain has one (Reacher's restarts from stored qpos/qvel). A notebook plots
one against the other (`momawb.plots.calibration_figure`, notebooks/reacher.ipynb). `rollout_state_norms`
measures how far model rollouts drift with and without the bounding-box clip (the ablation plot).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from momawb.datasets import Dataset
from momawb.world_model import WorldModel

__all__ = ["calibration", "rollout_state_norms"]


def calibration(model: WorldModel, dataset: Dataset, domain=None, idx: np.ndarray | None = None, k: int = 5,
                simulator=None, n_rollouts: int = 256, seed: int = 0) -> dict[str, Any]:
    """Is eps_g a good error signal? Compares it with the real error on held-out transitions.

    ``one_step``: on transitions ``idx`` (default: the model's validation split), arrays (M,)
    of eps_g, eps_r, aleatoric and the real error ||[s_hat' - s', r_bar - r]||_2 (plus its state
    and reward parts). ``rollout`` (when ``simulator`` is given or ``domain.has_simulator``):
    ``n_rollouts`` open-loop k-step rollouts from dataset states in ``idx`` replaying the
    dataset's next k actions in the model and in the simulator (`SimStep` interface), arrays
    (n, k) of eps_g, the error against the simulator (NaN after a simulated terminal) and the
    share of predicted coordinates the bounding box clipped (``clip_frac``: its mean; 0 when the
    model does not clip).
    ``spearman``: rank correlation of eps_g and the error (one-step, and per rollout step).
    """
    domain = domain or model.domain
    if idx is None:
        idx = dataset.split(model.meta.get("val_fraction", model.config.val_fraction),
                            seed=model.meta.get("seed", 0))[1]
    idx = np.asarray(idx, dtype=np.int64)
    idx = idx[dataset.next_known[idx]]           # rows with a recorded s' (`Dataset.next_known`)
    gen = torch.Generator(model.device).manual_seed(seed)
    acts = domain.split_actions(dataset.actions)
    out = model.step(dataset.observations[idx], acts[idx], generator=gen)
    es = (out.next_states.cpu().numpy() - dataset.next_observations[idx])
    er = out.rewards.cpu().numpy() - dataset.rewards[idx]
    err = np.sqrt((es ** 2).sum(1) + er ** 2)
    res: dict[str, Any] = {"one_step": {"eps_g": out.eps_g.cpu().numpy(), "eps_r": out.eps_r.cpu().numpy(),
                                        "aleatoric": out.aleatoric.cpu().numpy(), "error": err,
                                        "state_error": np.linalg.norm(es, axis=1), "reward_error": np.abs(er)}}
    res["spearman"] = {"one_step": _spearman(res["one_step"]["eps_g"], err)}
    if simulator is None and getattr(domain, "has_simulator", False):
        simulator = domain.simulator()
    if simulator is None:
        res["rollout"] = None
        return res
    bounds = dataset.episode_bounds()
    ep_end = np.repeat(bounds[:, 1], bounds[:, 1] - bounds[:, 0])      # (N,) end of each one's episode
    starts = idx[idx + k <= ep_end[idx]]
    if len(starts) == 0:
        raise ValueError(f"no transition in idx has {k} steps left in its episode; lower k")
    starts = np.random.default_rng(seed).choice(starts, min(n_rollouts, len(starts)), replace=False)
    s_model, s_sim = dataset.observations[starts], dataset.observations[starts]
    qpos = None if dataset.qpos is None else dataset.qpos[starts]
    qvel = None if dataset.qvel is None else dataset.qvel[starts]
    alive = np.ones(len(starts), bool)
    eps_g, error, clipped = np.zeros((len(starts), k)), np.zeros((len(starts), k)), np.zeros((len(starts), k))
    for j in range(k):
        a = acts[starts + j]
        m = model.step(s_model, a, generator=gen)
        sim = simulator.step(s_sim, a, qpos, qvel)
        s_model = m.next_states.cpu().numpy()
        d = np.concatenate([s_model - sim.next_states, (m.rewards.cpu().numpy() - sim.rewards)[:, None]], 1)
        eps_g[:, j], error[:, j] = m.eps_g.cpu().numpy(), np.where(alive, np.linalg.norm(d, axis=1), np.nan)
        clipped[:, j] = m.clipped.cpu().numpy()
        alive &= ~np.asarray(sim.terminals, bool)
        s_sim, qpos, qvel = sim.next_states, sim.qpos, sim.qvel
    res["rollout"] = {"start": starts, "eps_g": eps_g, "error": error, "clipped": clipped}
    res["clip_frac"] = float(clipped.mean())
    res["spearman"]["rollout"] = [_spearman(eps_g[:, j], error[:, j]) for j in range(k)]
    return res


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a[ok])), np.argsort(np.argsort(b[ok]))
    c = np.corrcoef(ra, rb)[0, 1]
    return float(c) if np.isfinite(c) else float("nan")


def rollout_state_norms(model: WorldModel, dataset: Dataset, k: int = 10, n_rollouts: int = 256, team=None,
                        seed: int = 0) -> dict[str, Any]:
    """How far k-step model rollouts drift, with and without the bounding-box clip (PAPER.md
    section 2: "without the state clipping, predicted states explode after a few steps").

    From ``n_rollouts`` dataset states, the same rollout is run twice in ``model``: with the
    state clip (as MOMA-PPO does) and without it. Actions come from ``team`` (a `Team`, acting
    greedily on the domain's observations; memory teams get zero histories) or, when None, are
    the dataset's next k actions (open loop; starts need k steps left in their episode).
    Returns ``clipped``/``unclipped``: (n, k) Euclidean norms of the predicted states, and
    ``dataset``: the norms of the dataset's states at the 50th, 99th percentile and max, the
    range the clip keeps rollouts in.
    """
    domain = model.domain
    rng = np.random.default_rng(seed)
    acts = domain.split_actions(dataset.actions)
    if team is None:
        bounds = dataset.episode_bounds()
        ep_end = np.repeat(bounds[:, 1], bounds[:, 1] - bounds[:, 0])
        ok = np.flatnonzero(np.arange(len(dataset)) + k <= ep_end)
        if len(ok) == 0:
            raise ValueError(f"no dataset transition has {k} steps left in its episode; lower k")
        starts = rng.choice(ok, min(n_rollouts, len(ok)), replace=False)
    else:
        starts = rng.choice(len(dataset), min(n_rollouts, len(dataset)), replace=False)
    out = {}
    for name, clip in (("clipped", True), ("unclipped", False)):
        m = model.with_options(clip_state=clip)
        gen = torch.Generator(model.device).manual_seed(seed)
        s = torch.as_tensor(dataset.observations[starts], device=model.device)
        norms = np.zeros((len(starts), k))
        for j in range(k):
            if team is None:
                a = torch.as_tensor(acts[starts + j], device=model.device)
            else:
                obs = domain.observe(s)
                L = int(getattr(team, "memory_length", 0) or 0)
                feat = domain.obs_dim + (domain.n_actions if domain.discrete else domain.act_dim)
                hist = torch.zeros(len(s), domain.n_agents, L, feat, device=model.device) if L else None
                a = team.act(obs, hist, True).to(model.device)
            s = m.step(s, a, generator=gen).next_states
            norms[:, j] = torch.linalg.vector_norm(s, dim=1).cpu().numpy()
        out[name] = norms
    data_norms = np.linalg.norm(dataset.observations, axis=1)
    out["dataset"] = {"p50": float(np.percentile(data_norms, 50)), "p99": float(np.percentile(data_norms, 99)),
                      "max": float(data_norms.max())}
    return out
