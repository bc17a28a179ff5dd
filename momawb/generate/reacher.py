"""Two-agent Reacher datasets (PAPER.md section 6, Table 2): expert teams and the expert-mix.

Expert teams are online MAPPO (`momawb.moma_ppo.train`, ``mode="online"``) on the
all-observant task, one run per seed under ``outputs/runs/reacher-expert/seed<k>-<hash>``, so
reruns reuse them. Each team's convention
is measured from its own greedy episodes (`momawb.conventions.measure_conventions`); seeds
are tried in order until at least one pure CCW and one pure CW team exist (the paper: "the
seed decided the convention"). An optional convention-shaping reward (off by default) adds
c * sign * tanh(theta_2 / 0.1) per step *during expert training only*, to the seeds tried after
the first ``unshaped_seeds``, with the sign of the convention still missing. Last resort
(``mirror_fallback``, off by default): the missing convention's team is the mirror image of the
other one (`MirroredTeam`; Reacher is symmetric under reflection about the x axis).
The dataset: ``episodes_per_team`` stochastic episodes of the best CCW team, then as many of
the best CW team (the released code concatenated its two halves the same way), with
qpos/qvel stored; reference returns: the paper's and our own measured ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from momawb.config import Config, param, register
from momawb.datasets import Dataset, library_versions
from momawb.evaluation import team_device
from momawb.generate.cache import cached
from momawb.runs import config_hash, outputs_root

#: expert training defaults (MomaPPOConfig overrides); see benchmarks/bench_reacher_experts.py
REACHER_EXPERT_TRAINING = {"mode": "online", "steps": 400, "hidden": (64, 64), "lr": 1e-4, "n_envs": 10,
                           "transitions_per_update": 2000, "eval_every": 0, "log_every": 10,
                           "checkpoint_every": 50, "device": "cpu"}


@register("reacher_generator")
@dataclass
class ReacherDatasetConfig(Config):
    """Two-agent Reacher expert-mix: online MAPPO expert teams of both elbow conventions."""

    expert_steps: int = param(400, "MAPPO iterations per expert team (2000 transitions each)", ge=1)
    expert_hidden: tuple[int, ...] = param((64, 64), "hidden sizes of the experts' networks", ge=1)
    expert_lr: float = param(1e-4, "experts' Adam lr (the paper's 5e-5 learns too slowly on 2 cores)", gt=0)
    expert_overrides: dict = param(default_factory=dict, doc="further MomaPPOConfig overrides for experts")
    shaping: float = param(0.0, "convention-shaping coefficient c: during expert training only, reward "
                           "+= c * tanh(theta_2 / 0.1) * sign, sign = +1 (CCW) or -1 (CW); 0 = off", ge=0)
    unshaped_seeds: int = param(2, "seeds trained without shaping first; later seeds are shaped towards the "
                                "convention still missing (only when shaping > 0)", ge=0)
    seed: int = param(0, "first expert seed and dataset seed", ge=0)
    max_seeds: int = param(6, "expert seeds tried at most (seed, seed+1, ...)", ge=1)
    min_expert_score: float = param(0.2, "a team counts as an expert only above this paper-normalised "
                                    "greedy score", ge=-10)
    convention_episodes: int = param(50, "greedy episodes to measure a team's convention", ge=1)
    episodes_per_team: int = param(10_000, "dataset episodes from each convention team (paper: 10,000)", ge=1)
    random_episodes: int = param(200, "uniform-random-policy episodes for the measured random return", ge=1)
    stochastic: bool = param(True, "sample the experts' actions (as the released code); False = greedy")
    mirror_fallback: bool = param(False, "when the seeds tried give an expert of one convention only, use its "
                                  "mirror image (reflection about the x axis) as the other convention's team")
    name: str = param("expert-mix", "dataset name stored in the file's metadata")

    def training_config(self, seed: int):
        from momawb.moma_ppo import MomaPPOConfig
        kw = {**REACHER_EXPERT_TRAINING, "steps": self.expert_steps, "hidden": tuple(self.expert_hidden),
              "lr": self.expert_lr, **self.expert_overrides, "mode": "online"}
        return MomaPPOConfig(**kw)


def shaped_reacher_domain(coef: float, sign: int, observation: str = "fo"):
    """The Reacher `Domain` whose env adds ``coef * sign * tanh(theta_2 / 0.1)`` to the team
    reward (expert training only; datasets and scores always use the true reward)."""
    from momawb.domains import reacher

    base = reacher.make_domain(observation)

    class ShapedEnv(reacher.TwoAgentReacherEnv):
        def step(self, actions):
            obs, rew, term, trunc, info = super().step(actions)
            bonus = coef * sign * float(np.tanh(self.reacher.data.qpos[1] / 0.1))
            return obs, {a: r + bonus for a, r in rew.items()}, term, trunc, info

    def env_factory(seed=None, **kw):
        env = ShapedEnv(base.task, base.episode_length, **kw)
        if seed is not None:
            env.reset(seed=seed)
        return env

    base.env_factory = env_factory
    base.info = {**base.info, "shaping": {"coef": coef, "sign": sign}}
    return base


def train_reacher_expert(config: ReacherDatasetConfig, seed: int, root: str | Path | None = None,
                         progress: bool = False, shaping_sign: int = 0) -> tuple[object, dict]:
    """Train (or reload) the expert team of one seed; returns (team, info with convention).

    ``shaping_sign`` +1/-1 trains with ``config.shaping`` towards CCW/CW; 0 = no shaping.
    The run lives in ``<root>/runs/reacher-expert/seed-<hash of (MAPPO config, shaping, seed)>``.
    """
    import time

    from momawb import conventions, moma_ppo
    from momawb.domains import reacher
    from momawb.loop import TrainingDiverged
    from momawb.runs import Run

    cfg = config.training_config(seed)
    coef = config.shaping if shaping_sign else 0.0
    domain = reacher.make_domain("fo")
    train_domain = shaped_reacher_domain(coef, shaping_sign) if coef > 0 else domain
    # unshaped runs keep the seed-parity sign in their key (ignored: coefficient 0)
    key_sign = shaping_sign if coef > 0 else (1 if seed % 2 == 0 else -1)
    run = Run("reacher-expert/seed", {"mappo": cfg, "shaping": coef, "shaping_sign": key_sign}, seed=seed,
              root=root)
    info = run.read_json("expert.json")
    if info is not None and info.get("diverged"):
        return None, info                     # a diverged seed stays diverged: skip it on reruns
    t0 = time.perf_counter()
    try:
        team = moma_ppo.train(cfg, None, train_domain, run, progress=progress)
    except TrainingDiverged as e:
        info = {"seed": seed, "run_dir": str(run.dir), "train_wall_s": time.perf_counter() - t0, "steps": cfg.steps,
                "shaping": coef, "diverged": True, "error": str(e), "convention": "diverged",
                "return": float("nan"), "score": float("nan")}
        run.write_json("expert.json", info)
        return None, info
    wall = time.perf_counter() - t0
    if info is None:
        m = conventions.measure_conventions(team, domain, episodes=config.convention_episodes)
        info = {"seed": seed, "run_dir": str(run.dir), "train_wall_s": wall, "steps": cfg.steps,
                "transitions": cfg.steps * cfg.transitions_per_update, "shaping": coef,
                "shaping_sign": shaping_sign if coef > 0 else 0, **m}
        run.write_json("expert.json", info)
    return team, info


def _expert_info(args: tuple) -> dict:
    """`train_reacher_expert` on a pool worker: the team stays on disk, its info comes back."""
    config, seed, root = args
    return train_reacher_expert(config, seed, root)[1]


def reacher_experts(config: ReacherDatasetConfig, root: str | Path | None = None, progress: bool = False,
                    log=print, workers: int = 1) -> tuple[dict, list[dict]]:
    """Seeds in order until a CCW and a CW expert exist: ({'ccw': (team, info), 'cw': ...}, infos).

    ``workers > 1`` trains that many unshaped seeds at once in spawned processes (one each,
    ``cpu_count // workers`` torch threads), then reads them in seed order with the same
    stopping rule: the same experts and dataset as one at a time. A seed after the stopping
    point may be trained for nothing, and the call waits for it to end (at most one expert's
    training, on a core that would otherwise idle). Shaped seeds depend on the ones before and
    run alone."""
    from momawb.workers import call_with_threads, process_pool, threads_per_worker

    best: dict = {}
    infos = []
    seeds = list(range(config.seed, config.seed + config.max_seeds))
    unshaped = [s for k, s in enumerate(seeds) if config.shaping == 0 or k < config.unshaped_seeds]
    pool, started = None, {}
    try:
        for k, seed in enumerate(seeds):
            sign = 0
            if seed not in unshaped:
                missing = [c for c in ("ccw", "cw") if c not in best]
                sign = (1 if missing[0] == "ccw" else -1) if len(missing) == 1 else (1 if k % 2 == 0 else -1)
            elif workers > 1 and seed not in started:
                pool = pool or process_pool(workers)
                for s in unshaped[unshaped.index(seed):unshaped.index(seed) + workers]:
                    started[s] = pool.submit(call_with_threads, _expert_info, (config, s, root),
                                             threads_per_worker(workers))
            if seed in started:
                started[seed].result()             # trained and saved; reloaded below
            team, info = train_reacher_expert(config, seed, root, progress, sign)
            if _take_expert(config, best, infos, team, info, seed, log):
                break
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return _with_mirror(config, best, infos, log)


def _take_expert(config: ReacherDatasetConfig, best: dict, infos: list, team, info: dict, seed: int, log) -> bool:
    """Record one seed's team; keep it as its convention's expert when it is the best so far.
    True once both conventions have an expert."""
    infos.append(info)
    if team is None:
        if log:
            log(f"reacher expert seed {seed}: training diverged ({info['error'][:80]}...)")
        return False
    if log:
        log(f"reacher expert seed {seed}: return {info['return']:.3f} score {info['score']:.3f} "
            f"convention {info['convention']} (ccw {info['ccw']:.2f} cw {info['cw']:.2f} "
            f"mis {info['miscoordinated']:.2f}), {info['train_wall_s']:.0f}s")
    conv = info["convention"]
    if conv in ("ccw", "cw") and info["score"] >= config.min_expert_score:
        if conv not in best or info["return"] > best[conv][1]["return"]:
            best[conv] = (team, info)
    return len(best) == 2


def _with_mirror(config: ReacherDatasetConfig, best: dict, infos: list, log) -> tuple[dict, list[dict]]:
    """``best`` completed by the mirror image of its one team (``mirror_fallback``); raises
    RuntimeError when a convention is still missing."""
    missing = {"ccw", "cw"} - set(best)
    if len(missing) == 1 and config.mirror_fallback:
        (have, (team, info)), = best.items()
        conv = missing.pop()
        from momawb import conventions
        from momawb.domains import reacher
        mirror = MirroredTeam(team)
        m = conventions.measure_conventions(mirror, reacher.make_domain("fo"), episodes=config.convention_episodes)
        best[conv] = (mirror, {**info, **m, "mirror_of": info["seed"]})
        if m["convention"] != conv:
            raise RuntimeError(f"the mirror of the {have} team bends {m['convention']!r}, not {conv!r}")
        if log:
            log(f"reacher expert {conv}: mirror image of the {have} team of seed {info['seed']}")
    if missing:
        raise RuntimeError(f"no {' or '.join(sorted(missing))} expert team among seeds {config.seed}.."
                           f"{config.seed + config.max_seeds - 1} (teams: "
                           f"{[(i['seed'], i['convention'], round(i['score'], 2)) for i in infos]}); raise "
                           "max_seeds or expert_steps, or set shaping > 0")
    return best, infos


#: sign of each state coordinate under the reflection about the x axis (theta -> -theta, y -> -y)
MIRROR_STATE = np.array([1, 1, -1, -1, 1, -1, -1, -1, 1, -1], np.float32)


class MirroredTeam:
    """A Reacher team reflected about the x axis: it sees mirrored observations and applies
    negated torques. Reacher's dynamics, start distribution and reward are symmetric under this
    reflection, so the mirror earns the same returns and bends the elbow the other way."""

    memory_length = 0

    def __init__(self, team, observation: str = "fo"):
        from momawb.domains import reacher
        self.team = team
        idx = reacher.observation_index(observation)
        self.sign = np.where(idx >= 0, MIRROR_STATE[np.maximum(idx, 0)], 1.0).astype(np.float32)

    def act(self, obs, history=None, greedy=True):
        sign = torch.as_tensor(self.sign, device=obs.device, dtype=obs.dtype)
        return -self.team.act(obs * sign, None, greedy)


def reacher_rollouts(team, n_episodes: int, seed: int, stochastic: bool = True, batch: int = 500,
                     random_policy: bool = False) -> dict:
    """Episodes of ``team`` (or uniform-random torques) in the FO two-agent Reacher, with qpos/qvel.

    Actions are clipped to [-1, 1] before the step and stored clipped (as the released code).
    Returns flat (N, ...) arrays in episode order: states, actions, rewards, next_states,
    timeouts, qpos, qvel, and the (E,) ``episode_returns``.
    """
    from momawb.domains import reacher

    domain = reacher.make_domain("fo")
    rng = np.random.default_rng(seed)
    torch_gen = torch.Generator().manual_seed(seed)
    T = domain.episode_length
    parts: dict[str, list] = {k: [] for k in ("states", "actions", "rewards", "next_states", "qpos", "qvel")}
    for b0 in range(0, n_episodes, batch):
        nb = min(batch, n_episodes - b0)
        envs = [domain.make_env() for _ in range(nb)]
        for e, env in enumerate(envs):
            env.reset(seed=int(seed * 1_000_003 + b0 + e) % (2**31 - 1))
        arr = {k: np.zeros((nb, T) + s, np.float64) for k, s in
               (("states", (10,)), ("actions", (2,)), ("rewards", ()), ("next_states", (10,)), ("qpos", (4,)),
                ("qvel", (4,)))}
        for t in range(T):
            s = np.stack([env.state() for env in envs])
            sim = [env.sim_state() for env in envs]
            if random_policy:
                a = rng.uniform(-1.0, 1.0, (nb, 2))
            else:
                obs = torch.as_tensor(domain.observe(s.astype(np.float32)), device=team_device(team))
                with torch.no_grad(), torch.random.fork_rng():   # reproducible, global RNG untouched
                    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=torch_gen)))
                    a = team.act(obs, None, greedy=not stochastic)
                a = np.clip(a.cpu().numpy().reshape(nb, 2), -1.0, 1.0)
            for e, env in enumerate(envs):
                act = a[e].astype(np.float32)
                _, r, _, _, _ = env.step({"agent_0": act[:1], "agent_1": act[1:]})
                arr["rewards"][e, t] = r["agent_0"]
                arr["next_states"][e, t] = env.state()
            arr["states"][:, t], arr["actions"][:, t] = s, a
            arr["qpos"][:, t] = np.stack([q for q, _ in sim])
            arr["qvel"][:, t] = np.stack([v for _, v in sim])
        for env in envs:
            env.close()
        for k in parts:
            parts[k].append(arr[k])
    out = {k: np.concatenate(v).reshape(n_episodes * T, *np.concatenate(v).shape[2:]) for k, v in parts.items()}
    out["episode_returns"] = np.concatenate(parts["rewards"]).sum(1)
    timeouts = np.zeros(n_episodes * T, bool)
    timeouts[T - 1::T] = True
    out["timeouts"] = timeouts
    return out


def generate_reacher(config: ReacherDatasetConfig, root: str | Path | None = None, teams: dict | None = None,
                     progress: bool = False, log=print, workers: int = 1) -> Dataset:
    """Build the expert-mix dataset in memory (training or reloading the experts first;
    ``workers`` expert seeds at once, `reacher_experts`).

    ``teams``: optional ``{'ccw': team, 'cw': team}`` to skip expert training (tests, custom
    experts); their conventions are still measured.
    """
    from momawb import conventions
    from momawb.domains import reacher

    domain = reacher.make_domain("fo")
    if teams is None:
        best, tried = reacher_experts(config, root, progress, log, workers)
    else:
        best, tried = {}, []
        for conv, team in teams.items():
            info = conventions.measure_conventions(team, domain, episodes=config.convention_episodes)
            info.update(seed=None, injected=True)
            if info["convention"] != conv:
                raise ValueError(f"the team given as {conv!r} bends {info['convention']!r} in its greedy episodes")
            best[conv] = (team, info)
            tried.append(info)
    halves = []
    for k, conv in enumerate(("ccw", "cw")):
        halves.append(reacher_rollouts(best[conv][0], config.episodes_per_team, config.seed * 2 + k, config.stochastic))
    rand = reacher_rollouts(None, config.random_episodes, 10_000 + config.seed, random_policy=True)
    zero = reacher_rollouts(_ZeroTeam(), min(config.random_episodes, 100), 20_000 + config.seed, stochastic=False)
    cat = {k: np.concatenate([h[k] for h in halves]) for k in halves[0]}
    n = len(cat["states"])
    expert_returns = [float(h["episode_returns"].mean()) for h in halves]
    strip = lambda i: {k: v for k, v in i.items() if k != "labels"}  # noqa: E731
    meta = {"name": config.name, "domain": "reacher", "task": "fo", "generator": "online-mappo-experts",
            "generator_config": config.to_dict(), "seed": config.seed, "versions": library_versions(),
            "reference_returns": {"random": domain.reference_returns[0], "expert": domain.reference_returns[1],
                                  "source": "PAPER.md section 6 (used by Domain.normalize)"},
            "measured_reference_returns": {
                "random": float(rand["episode_returns"].mean()),
                "random_policy": "uniform torques in [-1, 1]",
                "zero_torque": float(zero["episode_returns"].mean()),
                "expert": float(np.mean(expert_returns)),
                "expert_per_team": dict(zip(("ccw", "cw"), expert_returns)),
                "expert_policy": "mean dataset return of the two source teams"},
            "source_teams": {conv: strip(best[conv][1]) for conv in ("ccw", "cw")},
            "teams_tried": [strip(i) for i in tried],
            "episode_order": f"episodes 0..{config.episodes_per_team - 1}: ccw team; the rest: cw team",
            "episodes_per_convention": {"ccw": config.episodes_per_team, "cw": config.episodes_per_team}}
    return Dataset(cat["states"], cat["actions"], cat["rewards"], cat["next_states"], np.zeros(n, bool),
                   cat["timeouts"], cat["qpos"], cat["qvel"], meta=meta,
                   source=f"generated reacher dataset {config.name}")


class _ZeroTeam:
    """Both agents apply zero torque (the do-nothing reference return)."""

    memory_length = 0

    def act(self, obs, history=None, greedy=True):
        return torch.zeros(obs.shape[0], obs.shape[1], 1)


#: MomaPPOConfig stabilisers of the expert-mix experts. Plain MAPPO on Reacher's raw states mixes
#: a value loss of O(100) with the policy loss under one global grad-norm clip (grad norms 30-200,
#: so the policy barely moves; at lr 3e-4 the value blows up): running observation/state
#: normalisation, standardised value targets and per-group clipping fix that. With them, a log-std
#: starting at 0 (the clamp's upper edge) can be pushed above it and stay stuck at std 1 (no
#: gradient through the clamp): init_log_std = -1 keeps it inside (benchmarks/bench_reacher_experts.py).
REACHER_EXPERT_STABILISERS = {"obs_norm": True, "value_norm": True, "clip_per_group": True, "init_log_std": -1.0}

#: named Reacher datasets -> ReacherDatasetConfig overrides. "expert-mix": experts trained with
#: `REACHER_EXPERT_STABILISERS` at lr 3e-4 (about 1 s per iteration on a shared 2-core machine);
#: seeds are tried until both elbow conventions exist (a team counts only when >= 80 % of its
#: episodes bend one way), with the mirror image of the other convention's team as the last resort.
REACHER_DATASETS: dict[str, dict] = {"expert-mix": {"max_seeds": 4, "mirror_fallback": True, "expert_lr": 3e-4,
                                                    "expert_overrides": dict(REACHER_EXPERT_STABILISERS)}}


def reacher_dataset_config(name: str = "expert-mix", **overrides) -> ReacherDatasetConfig:
    """The config of a named Reacher dataset ('expert-mix'), with ``overrides``."""
    if name not in REACHER_DATASETS:
        raise ValueError(f"unknown reacher dataset {name!r}; known: {', '.join(REACHER_DATASETS)} "
                         "(or build ReacherDatasetConfig(...) for a custom one)")
    return ReacherDatasetConfig(**{"name": name, **REACHER_DATASETS[name], **overrides})


def reacher_dataset(config: ReacherDatasetConfig | str = "expert-mix", root: str | Path | None = None,
                    teams: dict | None = None, progress: bool = False, log=print, workers: int = 1) -> Dataset:
    """Load the expert-mix dataset from the cache, generating and saving it first when absent
    (with ``workers`` expert seeds trained at once: the same file as one at a time).

    Cached as ``outputs/datasets/reacher-<name>-<config hash>.hdf5`` (``-injected`` when
    ``teams`` are given, as their networks are not part of the hash).
    """
    if isinstance(config, str):
        config = reacher_dataset_config(config)
    tag = "-injected" if teams is not None else ""
    path = outputs_root(root) / "datasets" / f"reacher-{config.name}-{config_hash(config)}{tag}.hdf5"
    return cached(path, lambda: generate_reacher(config, root, teams, progress, log, workers))


DATASETS = tuple(REACHER_DATASETS)


def named_dataset(name: str, root: str | Path | None = None, progress: bool = False, workers: int = 1,
                  **overrides) -> Dataset:
    """A named Reacher dataset ('expert-mix'), cached; ``overrides`` change its config;
    ``workers`` expert seeds are trained at once (`reacher_experts`)."""
    return reacher_dataset(reacher_dataset_config(name, **overrides), root, progress=progress, workers=workers)


__all__ = ["DATASETS", "named_dataset", "ReacherDatasetConfig", "REACHER_EXPERT_TRAINING", "REACHER_EXPERT_STABILISERS", "REACHER_DATASETS",
            "MirroredTeam",
            "shaped_reacher_domain", "train_reacher_expert",
            "reacher_experts", "reacher_rollouts", "generate_reacher", "reacher_dataset_config", "reacher_dataset"]
