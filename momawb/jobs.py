"""Jobs: one training run of a grid cell (method, dataset, task, seed), and what it does.

    jobs = grid(methods=["iql", "moma_ppo"], datasets=["favorable"], seeds=range(10),
                domain="game", notebook="coordination_game", preset="ci")
    row = run_job(jobs[0])                   # dataset (cached), world model if needed, train, evaluate

A `Job` names its run; `run_job` trains it through ``momawb.train.train``, which resumes from
its checkpoint and skips training when its ``result.json`` exists. Running many jobs (the
order, the process pool, Ray) is `momawb.sweep`'s.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

__all__ = ["Job", "grid", "observation_grid", "job_setup", "generator_overrides", "prepare_dataset_job",
           "fit_world_model_job", "run_job", "needs_world_model", "trained_team", "CENTRALIZED"]

#: methods that act on the global state (centralized execution): run only under full observability
CENTRALIZED = ("iql",)


@dataclass(frozen=True)
class Job:
    """One training run. ``domain_kwargs`` pick the task (e.g. observation setting)."""

    method: str
    dataset: str                       # a named dataset of the domain, or a file/folder path
    seed: int = 0
    domain: str = "game"
    domain_kwargs: tuple = ()          # sorted (key, value) pairs, hashable
    notebook: str | None = None        # preset file params/<notebook>/<preset>.yaml
    preset: str | None = None
    overrides: tuple = ()              # (section, ((key, value), ...)) pairs
    eval_episodes: int = 100
    root: str | None = None
    data_seed: int | None = None       # None: the dataset's default; else a fresh sample per seed
    variant: str = ""                  # a label for the table (e.g. "simulator" for Table 5, an ablation)
    on_diverge: str = "raise"          # 'record': a diverged training is a row (score nan, 'diverged') not an error

    @property
    def task(self) -> str:
        """The observation setting when the domain takes one, else its options joined ('default')."""
        kw = dict(self.domain_kwargs)
        if "observation" in kw:
            return str(kw["observation"])
        return "-".join(str(v) for _, v in self.domain_kwargs) or "default"

    def section_overrides(self, section: str) -> dict:
        return dict(dict(self.overrides).get(section, ()))


def _freeze(d: dict | None) -> tuple:
    return tuple(sorted((k, tuple(sorted(v.items())) if isinstance(v, dict) else v) for k, v in (d or {}).items()))


def grid(methods: Sequence[str], datasets: Sequence[str], seeds: Iterable[int], domain: str = "game",
         tasks: Sequence[dict] | None = None, notebook: str | None = None, preset: str | None = None,
         overrides: dict[str, dict] | None = None, eval_episodes: int = 100, root: str | None = None,
         skip: Callable[[str, dict], bool] | None = None, resample_data: bool = False,
         variant: str = "", on_diverge: str = "raise") -> list[Job]:
    """The full grid; ``skip(method, task_kwargs)`` drops combinations (e.g. IQL under PO).

    ``resample_data=True`` collects a fresh dataset for every seed (dataset seed = run seed), so
    the spread over seeds includes the data-collection noise (the game: which convention a
    finite random dataset happens to favour). ``variant`` labels the jobs' rows (its runs differ
    through ``overrides``). ``on_diverge="record"`` makes a training that diverges (non-finite
    values) a row with score nan and ``diverged`` set (see `results.scored`, `results.diverged`) instead of an
    error that stops the sweep (``"raise"``, the default).

    Raises ValueError for an unknown ``on_diverge``, ConfigError for an ``overrides`` section
    that no config has (a misspelt one would otherwise leave every job on its preset's values)."""
    if on_diverge not in ("raise", "record"):
        raise ValueError(f"on_diverge must be 'raise' or 'record', got {on_diverge!r}")
    _check_overrides(overrides)
    jobs = []
    for task in tasks or [{}]:
        for ds in datasets:
            for m in methods:
                if skip is not None and skip(m, task):
                    continue
                for s in seeds:
                    jobs.append(Job(m, ds, int(s), domain, _freeze(task), notebook, preset,
                                    _freeze(overrides), eval_episodes, None if root is None else str(root),
                                    int(s) if resample_data else None, variant, on_diverge))
    return jobs


def _check_overrides(overrides: dict[str, dict] | None) -> None:
    from momawb import config as cfg
    for section, values in (overrides or {}).items():
        cfg.check_section(section, "overrides")
        if not isinstance(values, dict):
            raise cfg.ConfigError(f"overrides[{section!r}] must be a mapping of config keys, got {values!r}")


def observation_grid(methods: Sequence[str], dataset: str, seeds: Iterable[int], domain: str,
                     observations: Sequence[str], po_memory: bool = False, **kw: Any) -> list[Job]:
    """Jobs for a table over observation settings (Table 4a: 'fo', 'independent', 'leader').

    Centralized methods (`CENTRALIZED`) run only under 'fo'. ``po_memory`` turns the attention
    memory on for every method under partial observability (the paper's setup, PAPER.md
    section 4); ``kw`` (notebook, preset, overrides, eval_episodes, root) goes to `grid`."""
    from momawb import domains
    for obs in observations:
        domains.make(domain, observation=obs)  # an unknown setting fails here, naming the known ones
    jobs: list[Job] = []
    base = kw.pop("overrides", None) or {}
    for obs in observations:
        over = {k: dict(v) for k, v in base.items()}
        if po_memory and obs != "fo":
            for m in methods:
                over.setdefault(m, {})["memory"] = True
        jobs += grid(methods, [dataset], seeds, domain=domain, tasks=[{"observation": obs}], overrides=over,
                     skip=lambda m, task: m in CENTRALIZED and task.get("observation") != "fo", **kw)
    return jobs


def job_setup(job: Job, workers: int = 1):
    """``job``'s (domain, dataset): the named dataset at its preset (generated once, then cached;
    ``workers`` processes may share the generation, `generate.named_dataset`)."""
    from momawb import domains, generate
    dataset = generate.named_dataset(job.domain, job.dataset, root=job.root, seed=job.data_seed, workers=workers,
                                     **generator_overrides(job))
    return domains.make(job.domain, **dict(job.domain_kwargs)).for_dataset(dataset), dataset


def generator_overrides(job: Job) -> dict:
    """The dataset-generator keys of ``job``'s preset (section ``GENERATOR_SECTIONS[domain]``),
    then its overrides; a seed there is ignored (``job.data_seed`` decides)."""
    from momawb import config as cfg
    from momawb.generate import GENERATOR_SECTIONS
    section = GENERATOR_SECTIONS.get(job.domain)
    if section is None:
        return {}
    out = dict(cfg.read_preset(job.notebook, job.preset)[0].get(section) or {}) if job.notebook and job.preset else {}
    out.update(job.section_overrides(section))
    out.pop("seed", None)
    return out


def prepare_dataset_job(job: Job, progress: bool = False, workers: int = 1) -> None:
    """Generate (or find cached) ``job``'s dataset; run once per dataset before any training,
    on ``workers`` processes where the generator can share it (Reacher's expert seeds)."""
    job_setup(job, workers)


def _world_model_config(job: Job):
    from momawb import config as cfg
    return cfg.load(cfg.section_class("world_model"), job.notebook, job.preset,
                    job.section_overrides("world_model"), section="world_model")


def _fit_config(job: Job):
    """The world-model config that is *fitted* for ``job``: its step-time switches (`STEP_OPTIONS`)
    at their defaults, so the no-clipping ablation shares the ensemble with MOMA-PPO."""
    from momawb.world_model import STEP_OPTIONS, WorldModelConfig
    return _world_model_config(job).replace(**{k: getattr(WorldModelConfig(), k) for k in STEP_OPTIONS})


def fit_world_model_job(job: Job, progress: bool = False):
    """Fit (or load) the world model that MOMA-PPO uses for ``job``'s dataset, with ``job``'s
    step-time options (e.g. ``clip_state``)."""
    from momawb.runs import Run
    from momawb.train import dataset_tag
    from momawb.model_trainer import load_or_fit
    from momawb.world_model import STEP_OPTIONS
    domain, dataset = job_setup(job)
    wm_cfg, fit_cfg = _world_model_config(job), _fit_config(job)
    run = Run(f"{domain.name}/{dataset_tag(dataset)}/world_model", fit_cfg, seed=0, root=job.root,
              device=getattr(fit_cfg, "device", None))
    model = load_or_fit(dataset, domain, fit_cfg, run, progress=progress)
    return model.with_options(**{k: getattr(wm_cfg, k) for k in STEP_OPTIONS})


def run_job(job: Job, progress: bool = False, threads: int | None = None) -> dict:
    """Train and evaluate one job; returns its result row (see `momawb.train.TrainResult`)."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    from momawb.train import dataset_tag
    from momawb.loop import TrainingDiverged
    t0 = time.time()
    try:
        domain, dataset, res = _train(job, progress)
    except TrainingDiverged as e:
        if job.on_diverge != "record":
            raise
        return _with_rollouts(job, _diverged_row(job, e, time.time() - t0))
    row = res.to_dict()
    row.update(dataset=job.dataset, task=job.task, domain=job.domain, data_seed=job.data_seed,
               dataset_name=dataset_tag(dataset), variant=job.variant, job_wall_time=time.time() - t0)
    if domain.discrete:  # the convention the team converged to: its greedy joint action
        from momawb.evaluation import evaluate
        first = evaluate(res.team, domain, episodes=1, record=True).trajectories["actions"][0, 0, :, 0]
        row["greedy_joint_action"] = first.astype(int).tolist()
    if job.domain == "reacher":  # which way its greedy episodes bend the elbow, and mis-coordination
        from momawb.conventions import measure_conventions
        row["conventions"] = measure_conventions(res.team, domain, episodes=job.eval_episodes)
    return _with_rollouts(job, row)


def _with_rollouts(job: Job, row: dict) -> dict:
    """MOMA-PPO rows get ``rollouts``: what happened inside its rollouts, means over training
    (`momawb.ablations.rollout_summary` of the run's metrics)."""
    if job.method == "moma_ppo" and row.get("run_dir"):
        from momawb.ablations import rollout_summary
        from momawb.runs import read_metrics
        row["rollouts"] = rollout_summary(read_metrics(row["run_dir"]))
    return row


def _diverged_row(job: Job, err, wall: float) -> dict:
    """The row of a training that diverged (``on_diverge='record'``, e.g. an ablation that removes
    a safeguard): score nan, ``diverged`` = the error, and its curve so far."""
    from momawb.runs import read_metrics
    from momawb.train import eval_curve
    return {"method": job.method, "seed": job.seed, "score": math.nan, "score_se": math.nan, "diverged": str(err),
           "diverged_step": err.step, "run_dir": str(err.run_dir or ""), "config": {}, "wall_time": wall,
           "curve": eval_curve(read_metrics(err.run_dir)) if err.run_dir else [],
           "dataset": job.dataset, "task": job.task, "domain": job.domain, "data_seed": job.data_seed,
           "variant": job.variant, "job_wall_time": wall}


def needs_world_model(job: Job, config=None) -> bool:
    """Whether ``job`` trains on a learned world model (MOMA-PPO with ``mode: model``; not the
    online or ground-truth-simulator variants). ``config``: the job's method config, when the
    caller has it already (else it is read from the job's preset and overrides)."""
    if job.method != "moma_ppo":
        return False
    if config is None:
        from momawb.train import method_config
        config = method_config(job.method, job.notebook, job.preset, job.section_overrides(job.method))
    return getattr(config, "mode", "model") == "model"


def _train(job: Job, progress: bool = False):
    from momawb.train import method_config, train
    domain, dataset = job_setup(job)
    config = method_config(job.method, job.notebook, job.preset, job.section_overrides(job.method))
    extra: dict[str, Any] = {}
    if needs_world_model(job, config):
        extra["world_model"] = fit_world_model_job(job)
    res = train(job.method, dataset, domain, config, seed=job.seed, root=job.root,
                eval_episodes=job.eval_episodes, progress=progress, **extra)
    return domain, dataset, res


def trained_team(job: Job):
    """The team of a finished ``job``, rebuilt from its checkpoint (trains it when missing)."""
    return _train(job)[2].team
