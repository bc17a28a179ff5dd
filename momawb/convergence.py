"""Was a method stopped while still climbing? The end of its learning curves, tested.

A preset stops every method after a fixed number of steps. `late_trend` asks, for one method in
one setting, whether the score was still rising over the last part of training: a least-squares
slope through every seed's greedy evaluations (``curve`` of the result rows) in the last
``fraction`` of the steps, each seed with its own intercept (seeds that end at different levels
are not a trend), expressed as score gained per 10 % of the run, with a one-sided t-test of
slope > 0 (or < 0; `scipy.stats.t`). Points of one seed are treated as independent, which they
are not quite (one policy drifting), so read p as a screen, not an exact level. `climbing_table` does
it for a whole grid, so the notebooks can say which cells are not converged instead of leaving
the reader to guess from the plots.

The verdict is "still climbing" (slope > 0 at one-sided p < ``alpha``), "falling" (slope < 0 at
p < ``alpha``) or "flat". Evaluations are 10-episode estimates during training, so a flat
verdict means "no rise the curve can resolve", not "converged".
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

from momawb.tables import Table

__all__ = ["late_trend", "climbing_table", "still_climbing"]


def late_trend(curves: Sequence[Sequence[tuple[int, float]]], fraction: float = 1 / 3, alpha: float = 0.05,
               min_points: int = 3) -> dict:
    """The trend of learning curves (one per seed, [(step, score), ...]) over their last
    ``fraction`` of steps (at least ``min_points`` evaluations per seed).

    Returns {"final": mean over seeds of the last evaluation, "slope": score per 10 % of the run,
    "slope_se", "p": one-sided p of the slope's sign, "points": evaluations used, "verdict"}; the
    verdict is None (and slope nan) when fewer than ``min_points`` evaluations exist per seed.
    Raises ValueError when ``fraction`` is not in (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    curves = [np.asarray(c, np.float64).reshape(-1, 2) for c in curves if len(c)]
    out = {"final": math.nan, "slope": math.nan, "slope_se": math.nan, "p": math.nan, "points": 0, "verdict": None}
    if not curves:
        return out
    out["final"] = float(np.mean([c[-1, 1] for c in curves]))
    xs, ys = [], []
    for c in curves:
        end = c[-1, 0]
        late = c[c[:, 0] >= end * (1 - fraction)]
        if len(late) < min_points:
            late = c[-min_points:]
        if len(late) < min_points:
            return out
        xs.append(late[:, 0] / end * 10)         # in units of 10 % of the run
        ys.append(late[:, 1])
    # one slope, each seed its own intercept (within-seed least squares): seeds that end at
    # different levels do not make a trend
    xc = np.concatenate([x - x.mean() for x in xs])
    yc = np.concatenate([y - y.mean() for y in ys])
    out["points"] = len(xc)
    sxx = float(xc @ xc)
    dof = len(xc) - len(xs) - 1
    if sxx == 0 or dof < 1:
        return out
    slope = float(xc @ yc) / sxx
    resid = yc - slope * xc
    se = math.sqrt(float(resid @ resid) / dof / sxx)
    if se > 0:
        p = float(stats.t.sf(abs(slope) / se, dof))                # one-sided, in the slope's direction
    else:
        p = 0.0 if slope != 0 else 1.0                             # an exact line (or a constant)
    out.update(slope=slope, slope_se=se, p=p)
    if p < alpha:
        out["verdict"] = "still climbing" if slope > 0 else "falling"
    else:
        out["verdict"] = "flat"
    return out


def climbing_table(rows: Iterable[Mapping], methods: Sequence[str] | None = None, tasks: Sequence[str] | None = None,
                   display: Mapping[str, str] | None = None, task_key: str = "task", fraction: float = 1 / 3,
                   alpha: float = 0.05, title: str = "") -> Table:
    """`late_trend` for every (method, task) of result ``rows``: one table row each, "still
    climbing" cells marked. Rows without a curve (or diverged) are skipped."""
    groups: dict = defaultdict(list)
    for r in rows:
        if r.get("curve") and not r.get("diverged"):
            groups[(r["method"], str(r[task_key]))].append(r["curve"])
    methods = [m for m in (methods or sorted({m for m, _ in groups}))]
    tasks = [str(t) for t in (tasks or sorted({t for _, t in groups}))]
    display = display or {}
    header = ["method", task_key, "steps", "final score", "slope / 10 % of the run", "p (one-sided)", "verdict"]
    body, marks = [], set()
    for m in methods:
        for t in tasks:
            curves = groups.get((m, t))
            if not curves:
                continue
            tr = late_trend(curves, fraction, alpha)
            if tr["verdict"] == "still climbing":
                marks.add((len(body), 6))
            body.append([display.get(m, m), t, f"{int(curves[0][-1][0]):,}", f"{tr['final']:.2f}",
                         "-" if math.isnan(tr["slope"]) else f"{tr['slope']:+.3f} ± {tr['slope_se']:.3f}",
                         "-" if math.isnan(tr["p"]) else f"{tr['p']:.3f}", tr["verdict"] or "too few evaluations"])
    note = (f"Least-squares slope through every seed's evaluations in the last {fraction:.0%} of the steps "
            "(each seed its own intercept); "
            f"'still climbing' (marked) = slope > 0 at one-sided p < {alpha}. Each evaluation is a short "
            "greedy estimate, so 'flat' means no rise the curve resolves.")
    return Table(header, body, title or "Where each method stands when the preset stops it", note, marks)


def still_climbing(table: Table) -> list[str]:
    """'method (task)' for every row of a `climbing_table` whose verdict is 'still climbing'."""
    return [f"{r[0]} ({r[1]})" for r in table.rows if r[6] == "still climbing"]
