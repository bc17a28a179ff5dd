"""MOMA-PPO's ablations (PAPER.md section 7: Ant full-replay, FO and PO) as one sweep, what each
variant changed inside its rollouts, and which of the paper's conclusions a run reproduces.

    jobs = ablation_jobs(VARIANTS, "full-replay", range(3), "ant", ["fo", "po"], notebook="ant", preset="cpu")
    rows = sweep.sweep(jobs)
    comparisons(rows)            # each paper conclusion: differences, Welch p, bootstrap CI, verdict
    rollout_table(rows)          # per variant: cut share, length, penalty share, eps_g, clipped share

Every variant is MOMA-PPO with one line of overrides on its config sections (``moma_ppo`` or
``world_model``). The no-clipping variant changes only what `WorldModel.step` does with a
prediction, so it shares the fitted ensemble (`momawb.jobs.fit_world_model_job`).

Rollout statistics are measured during training (`momawb.rollouts.Rollouts.stats`, logged every
``log_every`` iterations; `momawb.jobs.run_job` keeps their means in the row as ``rollouts``).

Significance, two rules for two questions: per setting (the verdicts), Welch's t-test
(``scipy.stats.ttest_ind``, unequal variances) of the variant's seeds against the reference's,
significant at p < 0.05; over both settings (the ``*`` mark), the 95 % interval of the mean
difference (averaged over settings) by the stratified bootstrap (``scipy.stats.bootstrap``, each
setting's and each method's seeds resampled independently; percentile), significant when it
excludes 0. With 3 seeds per cell both are coarse: they can show a large effect, not rule out
a small one.
"""
from __future__ import annotations

import math
import warnings
from typing import Iterable, Mapping, Sequence

import numpy as np

from momawb.results import diverged, scored   # re-exported: the ablations notebook reads them here

__all__ = ["VARIANTS", "LABELS", "CONCLUSIONS", "STEP_UNITS", "scored", "diverged", "as_methods", "ablation_jobs",
           "rollout_summary", "rollout_table", "difference", "comparisons"]

INF = float("inf")

#: variant -> overrides per config section (MOMA-PPO is the reference: epistemic penalty, l_eps = 2, k = 10)
VARIANTS: dict[str, dict[str, dict]] = {
    "moma_ppo": {},
    "l_eps_inf": {"moma_ppo": {"l_eps": INF}},
    "aleatoric_1": {"moma_ppo": {"penalty": "aleatoric", "aleatoric_coef": 1.0}},
    "aleatoric_1_l_eps_inf": {"moma_ppo": {"penalty": "aleatoric", "aleatoric_coef": 1.0, "l_eps": INF}},
    "aleatoric_5": {"moma_ppo": {"penalty": "aleatoric", "aleatoric_coef": 5.0}},
    "aleatoric_5_l_eps_inf": {"moma_ppo": {"penalty": "aleatoric", "aleatoric_coef": 5.0, "l_eps": INF}},
    "lambda_r_0": {"moma_ppo": {"lambda_r": 0.0}},
    "lambda_g_0": {"moma_ppo": {"lambda_g": 0.0}},
    "no_clip": {"world_model": {"clip_state": False}},
    "k_5": {"moma_ppo": {"horizon": 5}},
    "k_25": {"moma_ppo": {"horizon": 25}},
    "k_50": {"moma_ppo": {"horizon": 50}},
}

LABELS = {
    "moma_ppo": "MOMA-PPO (epistemic, adaptive, k=10)", "l_eps_inf": "epistemic, l_eps=inf",
    "aleatoric_1": "aleatoric c=1, adaptive", "aleatoric_1_l_eps_inf": "aleatoric c=1, l_eps=inf",
    "aleatoric_5": "aleatoric c=5, adaptive", "aleatoric_5_l_eps_inf": "aleatoric c=5, l_eps=inf",
    "lambda_r_0": "lambda_r=0", "lambda_g_0": "lambda_g=0", "no_clip": "no state clipping",
    "k_5": "k=5", "k_25": "k=25", "k_50": "k=50",
}

#: the paper's conclusions (PAPER.md section 7): (claim, variant, reference, expected sign of variant - reference
#: per setting: -1 worse, 0 no significant difference, +1 better; None: the paper gives no claim there)
CONCLUSIONS: list[tuple[str, str, str, dict[str, int | None]]] = [
    ("epistemic beats aleatoric c=1 (adaptive), except FO (n.s.)", "aleatoric_1", "moma_ppo", {"fo": 0, "po": -1}),
    ("epistemic beats aleatoric c=5 (adaptive), except FO (n.s.)", "aleatoric_5", "moma_ppo", {"fo": 0, "po": -1}),
    ("epistemic beats aleatoric c=1 without adaptive rollouts", "aleatoric_1_l_eps_inf", "l_eps_inf",
     {"fo": -1, "po": -1}),
    ("epistemic beats aleatoric c=5 without adaptive rollouts", "aleatoric_5_l_eps_inf", "l_eps_inf",
     {"fo": -1, "po": -1}),
    ("lambda_r = 0 does not hurt", "lambda_r_0", "moma_ppo", {"fo": 0, "po": 0}),
    ("lambda_g = 0 hurts", "lambda_g_0", "moma_ppo", {"fo": -1, "po": -1}),
    ("no adaptive rollouts (l_eps = inf) hurts", "l_eps_inf", "moma_ppo", {"fo": -1, "po": -1}),
    ("no state clipping: rollouts explode (the paper gives no score)", "no_clip", "moma_ppo", {"fo": None, "po": None}),
    ("k = 5 vs 10: no significant difference", "k_5", "moma_ppo", {"fo": 0, "po": 0}),
    ("k = 25 vs 10: no significant difference", "k_25", "moma_ppo", {"fo": 0, "po": 0}),
    ("k = 50 vs 10: no significant difference", "k_50", "moma_ppo", {"fo": 0, "po": 0}),
]

ROLLOUT_KEYS = {"timeout_frac": "rollouts cut by eps_g >= l_eps", "length": "mean length",
                "penalty_share": "penalty / |r_bar|", "eps_g": "mean eps_g", "clipped": "coordinates clipped"}


def _variant(row: Mapping) -> str:
    """A result row's variant (rows of plain MOMA-PPO runs carry none: the reference)."""
    return row.get("variant") or "moma_ppo"


def as_methods(rows: Iterable[Mapping]) -> list[dict]:
    """``rows`` with ``method`` = their variant (tables and curves take one column per variant)."""
    return [{**r, "method": _variant(r)} for r in rows]


#: every variant's step is a MOMA-PPO learning iteration (the x axis of its learning curve)
STEP_UNITS = {v: "learning iterations" for v in VARIANTS}


def ablation_jobs(variants: Iterable[str], dataset: str, seeds: Iterable[int], domain: str,
                  observations: Sequence[str], overrides: Mapping[str, Mapping] | None = None,
                  po_memory: bool = False, **kw):
    """One MOMA-PPO job per (variant, setting, seed): ``overrides`` (papermill's sections) with the
    variant's on top; rows carry ``variant``. ``kw`` goes to `momawb.sweep.observation_grid`."""
    from momawb import sweep
    jobs = []
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown ablation variant {v!r}; known: {', '.join(VARIANTS)}")
        over = {k: dict(s) for k, s in (overrides or {}).items()}
        for section, values in VARIANTS[v].items():
            over.setdefault(section, {}).update(values)
        # a variant without a safeguard may diverge: that is a result (a row with score nan), not an error
        jobs += sweep.observation_grid(["moma_ppo"], dataset, seeds, domain, observations, po_memory=po_memory,
                                       overrides=over, variant=v, on_diverge="record", **kw)
    return jobs


def rollout_summary(metric_rows: Iterable[Mapping]) -> dict[str, float]:
    """Means over a MOMA-PPO run's logged ``rollout/*`` rows: ``timeout_frac`` (share of rollouts
    cut by the eps_g threshold), ``length`` (steps), ``eps_g`` (mean over transitions, squared
    state units: a covariance norm), ``clipped`` (share of predicted coordinates the bounding box
    clipped), ``penalty`` and ``reward`` (per transition) and ``penalty_share`` = penalty / |r_bar|.
    Empty when the run logged no rollouts."""
    rows = [r for r in metric_rows if "rollout/length" in r]
    if not rows:
        return {}
    out = {k: float(np.mean([r[f"rollout/{k}"] for r in rows if f"rollout/{k}" in r] or [math.nan]))
           for k in ("timeout_frac", "length", "eps_g", "clipped", "penalty", "reward")}
    out["penalty_share"] = out["penalty"] / abs(out["reward"]) if out["reward"] else math.nan
    return out


def rollout_table(rows: Iterable[Mapping], variants: Sequence[str] | None = None):
    """`momawb.tables.Table`: per (variant, setting), the seed means of `rollout_summary`."""
    from momawb.tables import Table
    groups: dict = {}
    rows = list(rows)
    for r in rows:
        if r.get("rollouts"):
            groups.setdefault((_variant(r), r["task"]), []).append(r["rollouts"])
    bad = diverged(rows)
    order = list(variants or VARIANTS)
    body = []
    for (v, task) in sorted(groups, key=lambda g: (order.index(g[0]) if g[0] in order else len(order), g[1])):
        s = groups[(v, task)]
        mean = {k: float(np.nanmean([x.get(k, math.nan) for x in s])) for k in ROLLOUT_KEYS}
        body.append([LABELS.get(v, v), task, f"{len(s)} ({len(bad.get((v, task), []))})",
                     f"{mean['timeout_frac']:.1%}", f"{mean['length']:.1f}",
                     f"{mean['penalty_share']:.1%}", f"{mean['eps_g']:.3g}", f"{mean['clipped']:.2%}"])
    return Table(["variant", "setting", "runs (diverged)", *ROLLOUT_KEYS.values()], body,
                 "Inside the rollouts, measured during training (mean over logged iterations and seeds, "
                 "diverged runs included up to their last logged iteration)")


def difference(variant: Mapping[str, Sequence[float]], reference: Mapping[str, Sequence[float]],
               n_resamples: int = 10_000, seed: int = 0) -> dict:
    """Scores of a variant and of its reference per setting (setting -> seeds' scores).

    Returns ``per_setting``: setting -> (mean difference, Welch p-value, fewest seeds of the two;
    p is nan below 2 seeds each, or when every score is equal),
    and over the settings both have: ``mean`` (the difference averaged over settings) with its
    95 % stratified-bootstrap interval ``low``, ``high`` (nan below 2 seeds) and ``significant``."""
    from scipy.stats import bootstrap, ttest_ind
    settings = [s for s in variant if s in reference and len(variant[s]) and len(reference[s])]
    if not settings:
        raise ValueError("difference: the variant and the reference share no setting with scores")
    per = {}
    for s in settings:
        x, y = np.asarray(variant[s], float), np.asarray(reference[s], float)
        p = math.nan
        if min(len(x), len(y)) >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # identical scores: the t statistic is nan
                p = float(ttest_ind(x, y, equal_var=False).pvalue)
        per[s] = (float(x.mean() - y.mean()), p, int(min(len(x), len(y))))
    mean = float(np.mean([per[s][0] for s in settings]))
    samples = [np.asarray(variant[s], float) for s in settings] + [np.asarray(reference[s], float) for s in settings]
    lo = hi = math.nan
    if min(len(x) for x in samples) >= 2:
        n = len(settings)

        def statistic(*xs, axis=-1):
            return np.mean([xs[i].mean(axis=axis) - xs[n + i].mean(axis=axis) for i in range(n)], axis=0)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = bootstrap(samples, statistic, paired=False, vectorized=True, n_resamples=n_resamples,
                            method="percentile", rng=np.random.default_rng(seed))
        lo, hi = (float(v) for v in res.confidence_interval)
    significant = bool(np.isfinite(lo) and (lo > 0 or hi < 0))
    return {"per_setting": per, "mean": mean, "low": lo, "high": hi, "significant": significant}


def _verdict(expected: Mapping[str, int | None], diff: Mapping) -> str:
    """'reproduced', 'contradicted' or 'cannot resolve', per setting joined: a setting with a
    Welch p < 0.05 counts as a significant difference in the sign of its mean."""
    parts = []
    for s, (d, p, n) in diff["per_setting"].items():
        want = expected.get(s)
        if want is None:
            continue
        if n < 2:
            parts.append(f"{s}: cannot resolve (one seed)")
            continue
        got = int(np.sign(d)) if np.isfinite(p) and p < 0.05 else 0   # equal scores (p nan): no difference
        if got == want:
            parts.append(f"{s}: reproduced" + (" (n.s.)" if want == 0 else ""))
        elif want == 0 or got == -want:
            parts.append(f"{s}: contradicted")
        else:
            parts.append(f"{s}: cannot resolve (n.s.)")
    return "; ".join(parts) or "no claim on the score"


def comparisons(rows: Iterable[Mapping], conclusions=CONCLUSIONS):
    """`momawb.tables.Table` of the paper's conclusions against ``rows`` (variant, task, score):
    per claim, the difference variant - reference per setting with its Welch p-value, the mean
    over settings with its stratified-bootstrap 95 % interval, and a verdict per setting."""
    from momawb.tables import Table
    scores: dict = {}
    for r in scored(rows):
        scores.setdefault(_variant(r), {}).setdefault(r["task"], []).append(float(r["score"]))
    settings = sorted({t for v in scores.values() for t in v})
    body = []
    for claim, v, ref, expected in conclusions:
        if v not in scores or ref not in scores:
            continue
        d = difference(scores[v], scores[ref])
        cells = []
        for s in settings:
            if s in d["per_setting"]:
                m, p, _ = d["per_setting"][s]
                cells.append(f"{m:+.2f} (p={p:.2f})" if np.isfinite(p) else f"{m:+.2f}")
            else:
                cells.append("-")
        both = (f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]" + (" *" if d["significant"] else "")
                if np.isfinite(d["low"]) else f"{d['mean']:+.2f}")
        body.append([claim, f"{LABELS.get(v, v)} − {LABELS.get(ref, ref)}", *cells, both, _verdict(expected, d)])
    return Table(["paper's conclusion", "difference"] + [f"{s}: mean (Welch p)" for s in settings]
                 + ["all settings: mean [95 % CI]", "verdict at these seeds"], body,
                 "The paper's ablation conclusions against ours (normalised score differences)",
                 "* the stratified-bootstrap interval excludes 0. A setting's difference counts as significant "
                 "when Welch's p < 0.05; 'n.s.': not significant.")
