"""Reference runs of single-agent offline RL (TD3+BC, IQL, CQL, BC) with d3rlpy 2.8.1.

A standalone script for a cross-check of momawb's single-agent cores against a maintained
library. It imports only numpy, h5py, torch and d3rlpy -- never momawb -- and runs with the
python of a separate venv, because d3rlpy 2.8.1 pins ``gymnasium==1.0.0`` and needs the old
``gym``, which momawb's venv cannot hold. The two sides exchange files only: a D4RL-layout HDF5
dataset in, a TorchScript greedy policy and a JSON summary out.

The reference venv (``benchmarks/reference_venv.py`` does this, idempotently)::

    python3 -m venv outputs/venvs/d3rlpy
    outputs/venvs/d3rlpy/bin/pip install torch==2.13.0 d3rlpy==2.8.1
    # torch pinned exactly (the CPU wheel), or pip may resolve a CUDA build; d3rlpy brings gym 0.26,
    # gymnasium 1.0.0, h5py, scikit-learn, structlog, dataclasses-json, click, tqdm, colorama

Usage::

    outputs/venvs/d3rlpy/bin/python benchmarks/d3rlpy_reference.py --data FILE.hdf5 --algo td3bc \\
        --steps 1000 --seed 0 --hidden 128 128 --batch-size 256 --lr 3e-4 --gamma 0.99 --tau 0.005 \\
        --out-policy policy.pt --out-json result.json [--no-obs-norm] [--log-every K] [--threads 1]

``--threads 1`` matters on a small shared machine: with 2 torch threads on 2 busy cores a step of
a 128x128 MLP took ~40x longer than with one thread (thread oversubscription).

Data (``--data``): top-level ``observations`` (n, O), ``actions`` (n, A) in [-1, 1], ``rewards``
(n,), ``terminals`` (n,), ``timeouts`` (n,), ``next_observations`` (n, O). An episode ends at a
row whose terminal or timeout flag is set (a row with both counts as terminal; d3rlpy 2.8.1
asserts they never coincide). What d3rlpy 2.x does with such data (read in
``d3rlpy/dataset/{compat,episode_generator,components,transition_pickers}.py`` at v2.8.1):

* ``MDPDataset`` cuts the rows into episodes at terminals/timeouts (``EpisodeGenerator``); rows
  after the last flagged row are silently dropped. It has no ``next_observations`` argument:
  ``BasicTransitionPicker`` builds the next observation of row i from row i+1 of the same
  episode. At the last row of a *terminated* episode it uses a zero observation (masked by
  terminal = 1, so harmless for TD targets) and the transition is kept; an episode that ends by
  *timeout* has ``transition_count = size - 1``: its last row, whose successor is unknown, is
  never sampled. ``d3rlpy.datasets.get_d4rl`` does exactly this (and ignores the file's
  ``next_observations``), as does ``d4rl.qlearning_dataset``.
* ``--timeouts append`` (default) keeps every row of the file as a transition, as momawb does:
  after each timeout episode (and after trailing unflagged rows) one padding row is appended
  whose observation is that episode's last ``next_observations`` row (action 0, reward 0); the
  padding row ends the episode as a timeout, so it is never sampled itself (nor counted by the
  observation scaler, which d3rlpy fits over sampled transitions only), and the real last row
  gets its true next observation with terminal = 0 (bootstrapped). ``--timeouts drop`` is
  d3rlpy's own ``get_d4rl`` behaviour (one transition fewer per timeout episode). Within an
  episode the script checks ``next_observations[i] == observations[i + 1]`` and reports the
  mismatches in the JSON (d3rlpy would use ``observations[i + 1]``).

Hyperparameters (CLI -> d3rlpy): ``--lr`` -> actor_learning_rate and critic_learning_rate (BC:
learning_rate), ``--batch-size`` -> batch_size, ``--gamma``, ``--tau``, ``--hidden`` ->
``VectorEncoderFactory(hidden_units=hidden)`` (ReLU) for the actor, the critics and IQL's value
function (each net: encoder MLP + one linear head), two critics (n_critics = 2) everywhere.

* td3bc: ``TD3PlusBCConfig`` alpha 2.5, target_smoothing_sigma 0.2, target_smoothing_clip 0.5,
  update_actor_interval 2, ``StandardObservationScaler()`` ((s - mean) / (std + 1e-3), fitted
  on the dataset; the author's recipe) unless ``--no-obs-norm``.
* iql: ``IQLConfig`` expectile 0.7, weight_temp (beta) 3.0, max_weight 100.
* cql: ``CQLConfig`` conservative_weight 1.0 and n_action_samples 10 (momawb ICQL's alpha_cql and
  K; d3rlpy's defaults are 5.0 and 10), alpha_learning_rate 0 with initial_alpha 1.0 (a fixed
  penalty weight, like momawb; d3rlpy's default 1e-4 tunes a Lagrange multiplier against
  alpha_threshold 10), actor lr = --lr (d3rlpy default 1e-4), SAC temperature left at d3rlpy's
  defaults (initial_temperature 1.0, temp_learning_rate 1e-4, target entropy -A),
  soft_q_backup False, max_q_backup False. Flags ``--cql-*`` override these.
* bc: ``BCConfig`` policy_type "deterministic" (d3rlpy's default): a tanh MLP trained by
  ``F.mse_loss(tanh(mu(s)), a)``; learning_rate = --lr and batch_size = --batch-size (d3rlpy's
  defaults are 1e-3 and 100).
* No reward scaler, no action scaler (actions are already in [-1, 1]); observation scaler only
  for td3bc (``--obs-norm`` forces it on for the others, ``--no-obs-norm`` off for all).
* Training: ``d3rlpy.seed(seed)`` (python, numpy -- which also draws d3rlpy's minibatch indices
  --, torch), CPU, ``fit(n_steps=steps, n_steps_per_epoch=gcd(steps, log_every))``, so exactly
  ``steps`` gradient steps; no evaluators, no environment, ``NoopAdapterFactory`` (d3rlpy writes
  no logs), no progress bar. Losses are the per-epoch means d3rlpy's fitter returns.
* ``save_policy(out_policy)`` (``.pt``) writes ``torch.jit.trace`` of the greedy policy
  *including* the observation scaler's transform (mean/std baked in as constants) and the action
  scaler's reverse transform (none here): it maps raw (B, O) float32 observations to (B, A)
  actions. Greedy action = ``tanh(mu(s))`` for all four algorithms (TD3+BC/BC: the
  deterministic actor; IQL, CQL: the tanh of the Gaussian's mean).

Known structural differences from momawb's cores (``momawb/baselines/{td3bc,iql,cql,bc}.py``
run on one agent; momawb's N-agent stacking is otherwise the same maths):

* All: d3rlpy sums the two critics' TD losses (``compute_ensemble_q_function_error``), momawb
  averages them (a factor 2 on the critic loss; Adam is almost invariant to it). Weight init is
  PyTorch's ``nn.Linear`` default in d3rlpy, uniform +-1/sqrt(fan_in) in momawb (same bias
  bound, weights ~sqrt(3) wider); momawb's Gaussian heads start with their last layer x0.1.
  d3rlpy samples minibatches with numpy's global RNG from a Python loop over transitions.
* TD3+BC: d3rlpy's BC term is ``((a - pi(s))**2).mean()`` over batch *and* action dims, like
  the author's ``F.mse_loss``; momawb sums it over action dims (A times stronger BC relative to
  lambda Q). Both: Q1 in the actor loss, lambda = alpha / mean|Q1| detached, targets updated only
  on actor steps, actor on steps 0, 2, 4, ... d3rlpy's scaler divides by (std + 1e-3), momawb's
  obs_norm by sqrt(var + 1e-6) (identical unless std ~ 1e-3).
* IQL: d3rlpy's policy is a Gaussian with tanh-squashed *mean* (samples not squashed) and a
  state-independent log-std parameter mapped by a sigmoid into [-5, 2]; momawb's mean is
  tanh(mu) too (``tanh_mean``, default on), and its log-std one learned parameter clamped to
  [-5, 2] (``state_dependent_std``, default off; with it on, from the net, in [-6, 0]: 0.11
  lower on the joint Reacher agent). d3rlpy steps Q and V together with one "critic" Adam,
  *then* computes the AWR weights with the updated V and the target Q, then steps the actor;
  momawb computes all three losses from one forward pass (advantage from V before its step) and
  steps all optimisers together.
  Both: V regresses on min of the target Qs, Q on r + gamma (1 - d) V(s'), weights
  exp(beta A) clipped at 100, log-prob summed over action dims, target Q soft-updated every step.
* CQL: d3rlpy's CQL is SAC-based: a stochastic tanh-Gaussian actor (state-dependent log-std in
  [-20, 2]) trained every step on temp * log pi - min(Q1, Q2) with an auto-tuned entropy
  temperature; TD target min Q'(s', tanh(mu(s'))) of the *current* policy's mean (no target
  actor, no smoothing noise, no entropy term, as soft_q_backup is off); target critics updated
  every step. Its penalty is logsumexp over 3 x n_action_samples actions (n sampled from pi(.|s),
  n from pi(.|s'), both evaluated at s, and n uniform) *with* importance weights (minus the
  policies' log-probs, minus log 0.5^A for the uniform ones), times conservative_weight x alpha,
  summed over critics; the constant -alpha_threshold in it has no gradient when alpha is fixed
  (but offsets the logged conservative_loss by -10 x weight). momawb's ICQL is TD3-based:
  deterministic tanh actor maximising Q1 (lambda 1, no BC, no entropy), actor and target updates
  every 2 steps, target actor with smoothing noise, and proposals = K uniform + K noisy pi(s) +
  K noisy pi(s') (sigma 0.2) with *no* importance correction, averaged over critics. At the last
  row of a terminated episode d3rlpy's pi(.|s') proposals see a zero next observation.
* BC: d3rlpy fits a deterministic tanh MLP by MSE; momawb's IBC maximises the Gaussian
  log-likelihood (unsquashed mean, state-dependent std in [-6, 0]) and acts with the clipped
  mean. (d3rlpy's policy_type "stochastic" is *not* an NLL either: MSE of a reparameterised
  sample.)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import h5py
import numpy as np
import torch

import d3rlpy

ALGOS = ("td3bc", "iql", "cql", "bc")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="D4RL-layout HDF5 file")
    p.add_argument("--algo", required=True, choices=ALGOS)
    p.add_argument("--steps", type=int, required=True, help="gradient steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--tau", type=float, default=0.005)
    p.add_argument("--out-policy", required=True, help="TorchScript greedy policy (.pt)")
    p.add_argument("--out-json", required=True)
    norm = p.add_mutually_exclusive_group()
    norm.add_argument("--no-obs-norm", dest="obs_norm", action="store_false", default=None,
                      help="no StandardObservationScaler (default: scaler for td3bc only)")
    norm.add_argument("--obs-norm", dest="obs_norm", action="store_true",
                      help="StandardObservationScaler for any algo")
    p.add_argument("--log-every", type=int, default=1000,
                   help="steps per d3rlpy epoch (loss logging); gcd(steps, log_every) is used")
    p.add_argument("--timeouts", choices=("append", "drop"), default="append",
                   help="append: keep each timeout episode's last transition (padding row from "
                        "next_observations); drop: d3rlpy's get_d4rl behaviour")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    # algorithm-specific knobs (defaults: the values matched to momawb)
    p.add_argument("--td3bc-alpha", type=float, default=2.5)
    p.add_argument("--iql-expectile", type=float, default=0.7)
    p.add_argument("--iql-beta", type=float, default=3.0)
    p.add_argument("--iql-max-weight", type=float, default=100.0)
    p.add_argument("--cql-conservative-weight", type=float, default=1.0)
    p.add_argument("--cql-n-action-samples", type=int, default=10)
    p.add_argument("--cql-alpha-lr", type=float, default=0.0, help="0: fixed alpha (Lagrange off)")
    p.add_argument("--cql-initial-alpha", type=float, default=1.0)
    p.add_argument("--cql-alpha-threshold", type=float, default=10.0)
    p.add_argument("--cql-temp-lr", type=float, default=1e-4)
    p.add_argument("--cql-initial-temperature", type=float, default=1.0)
    p.add_argument("--cql-actor-lr", type=float, default=None, help="default: --lr")
    p.add_argument("--bc-policy-type", choices=("deterministic", "stochastic"), default="deterministic")
    args = p.parse_args(argv)
    if args.steps < 1 or args.log_every < 1:
        p.error("--steps and --log-every must be >= 1")
    if not args.out_policy.endswith(".pt"):
        p.error("--out-policy must end in .pt (d3rlpy picks TorchScript by the extension)")
    return args


# ---------------------------------------------------------------------------- data
def load_dataset(path: str, timeouts_mode: str = "append"):
    """The HDF5 file as a d3rlpy ``MDPDataset`` plus a dict describing what was built."""
    with h5py.File(path, "r") as f:
        obs = np.asarray(f["observations"], dtype=np.float32)
        act = np.asarray(f["actions"], dtype=np.float32)
        rew = np.asarray(f["rewards"], dtype=np.float32).reshape(-1)
        term = np.asarray(f["terminals"]).reshape(-1).astype(bool)
        tout = (np.asarray(f["timeouts"]).reshape(-1).astype(bool) if "timeouts" in f
                else np.zeros_like(term))
        nxt = np.asarray(f["next_observations"], dtype=np.float32) if "next_observations" in f else None
    n = len(obs)
    if not (len(act) == len(rew) == len(term) == len(tout) == n) or (nxt is not None and len(nxt) != n):
        raise ValueError(f"{path}: datasets of unequal length")
    if act.ndim == 1:
        act = act[:, None]
    if np.abs(act).max(initial=0.0) > 1.0 + 1e-6:
        raise ValueError(f"{path}: actions must lie in [-1, 1] (max |a| = {np.abs(act).max():.3f})")
    both = term & tout
    tout = tout & ~term                                   # terminal wins (d3rlpy 2.8.1 asserts disjoint)
    ends = np.flatnonzero(term | tout)
    trailing = n - (ends[-1] + 1 if len(ends) else 0)
    if trailing and timeouts_mode == "drop":
        obs, act, rew, term, tout = obs[:n - trailing], act[:n - trailing], rew[:n - trailing], \
            term[:n - trailing], tout[:n - trailing]
        nxt = None if nxt is None else nxt[:n - trailing]
    elif trailing:                                        # the open last episode counts as a timeout
        tout = tout.copy()
        tout[-1] = True
        ends = np.append(ends, n - 1)
    # within-episode consistency of next_observations with the following row
    mismatch = 0
    if nxt is not None:
        inner = np.ones(len(obs) - 1, dtype=bool)
        inner[np.flatnonzero(term[:-1] | tout[:-1])] = False
        mismatch = int((~np.isclose(nxt[:-1][inner], obs[1:][inner], atol=1e-5)).any(-1).sum())
    info = {"rows": int(n), "terminal_and_timeout_rows": int(both.sum()), "trailing_rows": int(trailing),
            "episodes": int((term | tout).sum()), "terminal_episodes": int(term.sum()),
            "timeout_episodes": int(tout.sum()), "next_obs_mismatches": mismatch, "timeouts_mode": timeouts_mode}
    if timeouts_mode == "append":
        if nxt is None:
            raise ValueError(f"{path}: --timeouts append needs next_observations")
        cut = np.flatnonzero(tout) + 1                    # insert a padding row after each timeout row
        pad_obs = nxt[cut - 1]
        obs = np.insert(obs, cut, pad_obs, axis=0)
        act = np.insert(act, cut, np.zeros((len(cut), act.shape[1]), np.float32), axis=0)
        rew = np.insert(rew, cut, 0.0)
        term = np.insert(term, cut, False)
        tout_new = np.insert(tout, cut, True)
        tout_new[cut - 1 + np.arange(len(cut))] = False   # the old timeout rows (shifted) are now inner
        tout = tout_new
        info["padding_rows"] = int(len(cut))
        info["transitions"] = int(n)               # every row of the file
    else:
        info["padding_rows"] = 0
        info["transitions"] = int(len(obs) - tout.sum())
    dataset = d3rlpy.dataset.MDPDataset(observations=obs, actions=act, rewards=rew,
                                        terminals=term.astype(np.float32), timeouts=tout.astype(np.float32),
                                        action_space=d3rlpy.ActionSpace.CONTINUOUS, action_size=act.shape[1])
    assert dataset.transition_count == info["transitions"], (dataset.transition_count, info)
    info["obs_dim"], info["act_dim"] = int(obs.shape[1]), int(act.shape[1])
    return dataset, info


# ---------------------------------------------------------------------------- algorithms
def build_algo(args, obs_norm: bool):
    enc = d3rlpy.models.VectorEncoderFactory(hidden_units=list(args.hidden))
    scaler = d3rlpy.preprocessing.StandardObservationScaler() if obs_norm else None
    common = dict(batch_size=args.batch_size, observation_scaler=scaler)
    if args.algo == "td3bc":
        cfg = d3rlpy.algos.TD3PlusBCConfig(
            **common, actor_learning_rate=args.lr, critic_learning_rate=args.lr, actor_encoder_factory=enc,
            critic_encoder_factory=enc, gamma=args.gamma, tau=args.tau, n_critics=2,
            target_smoothing_sigma=0.2, target_smoothing_clip=0.5, alpha=args.td3bc_alpha,
            update_actor_interval=2)
    elif args.algo == "iql":
        cfg = d3rlpy.algos.IQLConfig(
            **common, actor_learning_rate=args.lr, critic_learning_rate=args.lr, actor_encoder_factory=enc,
            critic_encoder_factory=enc, value_encoder_factory=enc, gamma=args.gamma, tau=args.tau, n_critics=2,
            expectile=args.iql_expectile, weight_temp=args.iql_beta, max_weight=args.iql_max_weight)
    elif args.algo == "cql":
        cfg = d3rlpy.algos.CQLConfig(
            **common, actor_learning_rate=args.lr if args.cql_actor_lr is None else args.cql_actor_lr,
            critic_learning_rate=args.lr, temp_learning_rate=args.cql_temp_lr,
            alpha_learning_rate=args.cql_alpha_lr, actor_encoder_factory=enc, critic_encoder_factory=enc,
            gamma=args.gamma, tau=args.tau, n_critics=2, initial_temperature=args.cql_initial_temperature,
            initial_alpha=args.cql_initial_alpha, alpha_threshold=args.cql_alpha_threshold,
            conservative_weight=args.cql_conservative_weight, n_action_samples=args.cql_n_action_samples,
            soft_q_backup=False, max_q_backup=False)
    else:
        cfg = d3rlpy.algos.BCConfig(**common, learning_rate=args.lr, policy_type=args.bc_policy_type,
                                    encoder_factory=enc)
    return cfg, cfg.create(device="cpu:0")


def config_dict(cfg) -> dict:
    """Every field of the d3rlpy config, factories and scalers as their type and parameters."""
    def conv(v):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, np.ndarray):
            return v.tolist()
        if dataclasses.is_dataclass(v):
            return {"type": type(v).__name__, **{f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}}
        return repr(v)
    return {f.name: conv(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    d3rlpy.seed(args.seed)
    dataset, data_info = load_dataset(args.data, args.timeouts)
    obs_norm = (args.algo == "td3bc") if args.obs_norm is None else args.obs_norm
    cfg, algo = build_algo(args, obs_norm)
    per_epoch = math.gcd(args.steps, args.log_every)
    d3rlpy.seed(args.seed)                                # the same draws whatever the data loading did
    t0 = time.time()
    history = algo.fit(dataset, n_steps=args.steps, n_steps_per_epoch=per_epoch,
                       logger_adapter=d3rlpy.logging.NoopAdapterFactory(), show_progress=False,
                       experiment_name=f"reference_{args.algo}", with_timestamp=False)
    wall = time.time() - t0
    assert algo.grad_step == args.steps, (algo.grad_step, args.steps)
    algo.save_policy(args.out_policy)
    losses: dict[str, list[float]] = {}
    timings: dict[str, list[float]] = {}
    for _, metrics in history:
        for k, v in metrics.items():
            (timings if k.startswith("time_") else losses).setdefault(k, []).append(float(v))
    scaler = cfg.observation_scaler
    step_s = timings.get("time_step", [])
    steady = 1000.0 * float(np.mean(step_s)) if step_s else None   # per-epoch means, equal-sized epochs
    result = {
        "algo": args.algo, "steps": args.steps, "seed": args.seed, "wall_s": wall,
        "wall_s_per_1000_steps": 1000.0 * wall / args.steps,
        "step_s_per_1000_steps": steady,                  # d3rlpy's own per-step timer: no setup, no logging
        "total_s": time.time() - t_start,
        "d3rlpy_version": d3rlpy.__version__, "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(), "data": os.path.abspath(args.data), "dataset": data_info,
        "log_steps": [per_epoch * (i + 1) for i in range(len(history))],
        "config": {
            "algo_class": type(algo).__name__, "hidden": list(args.hidden), "batch_size": args.batch_size,
            "lr": args.lr, "gamma": args.gamma, "tau": args.tau, "obs_norm": obs_norm,
            "timeouts": args.timeouts, "n_steps_per_epoch": per_epoch, "device": "cpu:0",
            "obs_scaler_mean": None if scaler is None else np.asarray(scaler.mean).tolist(),
            "obs_scaler_std": None if scaler is None else np.asarray(scaler.std).tolist(),
            "d3rlpy": config_dict(cfg),
        },
        "losses": losses, "timings": timings,
        "policy": os.path.abspath(args.out_policy),
        "policy_includes": {"observation_scaler": scaler is not None, "action_scaler": False},
    }
    with open(args.out_json, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{args.algo}: {args.steps} steps in {wall:.1f} s ({result['wall_s_per_1000_steps']:.1f} s / 1000), "
          f"final {', '.join(f'{k}={v[-1]:.4g}' for k, v in losses.items())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
