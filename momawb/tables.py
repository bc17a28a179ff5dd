"""The paper's result tables as data, and measured tables built beside them.

The paper's numbers are in `momawb.paper_tables` (PAPER.md sections 6-7; re-exported here as
``TABLE1`` ... ``TABLE5``). Measured tables are built from ``results.json`` rows (method,
dataset/task, seed, score), never typed in.

`ResultTable` is what the notebooks show and save: per (task, method) the paper's statistic,
mean +- s.e. over seeds, plus the interquartile mean (IQM) with a 95 % bootstrap interval, and
per method the IQM over all tasks with a 95 % *stratified* bootstrap interval (`iqm_interval`,
Agarwal et al. 2021). Cells that disagree with the paper are marked by the rule of `within`.
`Table` is a plain grid with the same outputs: an HTML table in the notebook, markdown as
text, and ``save`` to CSV, markdown and LaTeX.
"""
from __future__ import annotations

import csv
import html
import io
import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from momawb.evaluation import mean_se
from momawb.paper_tables import TABLE1, TABLE2_ANT, TABLE2_REACHER, TABLE3, TABLE4A, TABLE4B, TABLE5

__all__ = ["TABLE1", "TABLE2_REACHER", "TABLE2_ANT", "TABLE3", "TABLE4A", "TABLE4B", "TABLE5", "aggregate",
           "side_by_side", "to_markdown", "to_html", "within", "mean_se", "iqm", "iqm_interval", "Table",
           "ResultTable", "payoff_table"]


def aggregate(rows: Iterable[Mapping]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """``rows`` with keys task, method, score -> task -> method -> (mean, s.e., n seeds)."""
    groups: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[r["task"]][r["method"]].append(float(r["score"]))
    return {t: {m: (*mean_se(v), len(v)) for m, v in ms.items()} for t, ms in groups.items()}


def within(measured: tuple[float, float], paper: tuple[float, float], k: float = 2.0, floor: float = 0.0) -> bool:
    """|mean difference| <= k combined standard errors (sqrt(se1^2 + se2^2)), at least ``floor``."""
    (m1, s1), (m2, s2) = measured[:2], paper[:2]
    return abs(m1 - m2) <= max(k * (s1 ** 2 + s2 ** 2) ** 0.5, floor)


def side_by_side(measured: Mapping, paper: Mapping, display: Mapping[str, str] | None = None,
                 digits: int = 2) -> list[list[str]]:
    """Rows [task, method1 'ours | paper', ...] for every task and method in ``measured``."""
    display = display or {}
    methods = [m for m in _method_order(paper, measured)]
    header = ["task"] + [display.get(m, m) for m in methods]
    rows = [header]
    for task in measured:
        row = [task]
        for m in methods:
            ours = measured[task].get(m)
            ref = paper.get(task, {}).get(m)
            cell = "-" if ours is None else f"{ours[0]:.{digits}f} ± {ours[1]:.{digits}f}"
            if ref is not None:
                ref_s = f"{ref[0]:.{digits}f} ± {ref[1]:.{digits}f}" if isinstance(ref, tuple) else f"{ref:.{digits}f}"
                cell += f" (paper {ref_s})"
            row.append(cell)
        rows.append(row)
    return rows


def _method_order(paper: Mapping, measured: Mapping) -> list[str]:
    order: list[str] = []
    for src in (paper, measured):
        for ms in src.values():
            for m in ms:
                if m not in order and any(m in measured[t] for t in measured):
                    order.append(m)
    return order


def to_markdown(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def to_html(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ----------------------------------------------------------------------------- statistics
def iqm(scores: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50 % of ``scores`` (``scipy.stats.trim_mean``
    with 25 % cut from each end; Agarwal et al. 2021, section 4)."""
    from scipy.stats import trim_mean
    return float(trim_mean(np.asarray(scores, np.float64), 0.25))


def iqm_interval(per_task: Sequence[Sequence[float]], confidence: float = 0.95, n_resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float, float]:
    """IQM of the scores of all tasks pooled, and its ``confidence`` interval by the stratified
    bootstrap of Agarwal et al. 2021 ("Deep Reinforcement Learning at the Edge of the
    Statistical Precipice", NeurIPS; the interval estimates of their ``rliable`` package, which
    does not import beside pandas 3): each task's runs (seeds) are resampled with replacement
    independently of the other tasks, and the IQM of the pooled resample is recomputed.

    Computed with ``scipy.stats.bootstrap`` given one sample per task and ``paired=False``,
    which resamples each sample independently, i.e. stratified by task; percentile intervals
    (as rliable). With one task this is the ordinary bootstrap over seeds. Returns
    (iqm, low, high); the interval is (nan, nan) when a task has fewer than 2 runs.
    """
    from scipy.stats import bootstrap, trim_mean
    samples = [np.asarray(x, np.float64) for x in per_task if len(x)]
    if not samples:
        raise ValueError("iqm_interval of no scores")
    point = iqm(np.concatenate(samples))
    if min(len(x) for x in samples) < 2:
        return point, math.nan, math.nan

    def statistic(*xs, axis=-1):
        return trim_mean(np.concatenate(xs, axis=axis), 0.25, axis=axis)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DegenerateDataWarning when every score is equal: [x, x]
        res = bootstrap(samples, statistic, paired=False, vectorized=True, confidence_level=confidence,
                        n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    if not (math.isfinite(lo) and math.isfinite(hi)):  # all resamples equal
        lo = hi = point
    return point, float(lo), float(hi)


# ----------------------------------------------------------------------------- tables
@dataclass
class Table:
    """A grid of strings: ``header``, ``rows``; ``marks[(i, j)]`` flags body cell (i, j) (shown
    in red in HTML, with ``*`` in text); ``caption`` and ``note`` explain it. In a notebook it
    renders as an HTML table (text viewers get markdown); `save` writes CSV, markdown, LaTeX."""

    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    note: str = ""
    marks: set = field(default_factory=set)
    html_cells: dict = field(default_factory=dict)   # (i, j) -> HTML shown instead of the text

    def _cell(self, i: int, j: int, text: bool = True) -> str:
        c = self.rows[i][j]
        return c + " *" if text and (i, j) in self.marks else c

    def to_markdown(self) -> str:
        body = [[self._cell(i, j) for j in range(len(r))] for i, r in enumerate(self.rows)]
        out = ([f"**{self.caption}**", ""] if self.caption else []) + [to_markdown([self.header] + body)]
        return "\n".join(out + (["", self.note] if self.note else []))

    def __repr__(self) -> str:
        return self.to_markdown()

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:center'>{html.escape(c)}</th>" for c in self.header)
        body = []
        for i, r in enumerate(self.rows):
            cells = []
            for j, c in enumerate(r):
                content = self.html_cells.get((i, j), html.escape(c))
                style = "text-align:left" if j == 0 else "text-align:center;white-space:nowrap"
                if (i, j) in self.marks:
                    style += ";background:#fde0dd"
                tag = "th" if j == 0 else "td"
                cells.append(f"<{tag} style='{style}'>{content}</{tag}>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        cap = f"<caption style='caption-side:top;text-align:left'><b>{html.escape(self.caption)}</b></caption>" \
            if self.caption else ""
        note = f"<p style='font-size:90%'>{html.escape(self.note)}</p>" if self.note else ""
        return (f"<table class='momawb-table'>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}"
                f"</tbody></table>{note}")

    def to_latex(self) -> str:
        """A booktabs ``tabular`` (marked cells get a dagger)."""
        def esc(c: str) -> str:
            for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                         ("±", r"$\pm$"), ("×", r"$\times$"), ("≠", r"$\neq$")):
                c = c.replace(a, b)
            return c
        lines = [r"\begin{tabular}{l" + "c" * (len(self.header) - 1) + "}", r"\toprule",
                 " & ".join(esc(c) for c in self.header) + r" \\", r"\midrule"]
        for i, r in enumerate(self.rows):
            lines.append(" & ".join(esc(c) + (r"$^\dagger$" if (i, j) in self.marks else "")
                                    for j, c in enumerate(r)) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        cap = [f"% {self.caption}"] if self.caption else []
        return "\n".join(cap + ([f"% {self.note}"] if self.note else []) + lines) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        csv.writer(buf).writerows([self.header] + self.rows)
        return buf.getvalue()

    def save(self, folder: str | Path, name: str) -> list[Path]:
        """``<folder>/<name>.csv``, ``.md`` and ``.tex``; returns the paths."""
        from momawb.runs import atomic_write_bytes
        folder = Path(folder)
        out = []
        for ext, text in (("csv", self.to_csv()), ("md", self.to_markdown() + "\n"), ("tex", self.to_latex())):
            atomic_write_bytes(folder / f"{name}.{ext}", text.encode())
            out.append(folder / f"{name}.{ext}")
        return out


def payoff_table(actions: Sequence[str], reward) -> Table:
    """The two-agent payoff matrix: ``reward((i, j))`` for agent 1 playing ``actions[i]`` and
    agent 2 ``actions[j]``."""
    rows = [[f"agent 1: {a}"] + [f"{reward((i, j)):g}" for j in range(len(actions))] for i, a in enumerate(actions)]
    return Table([""] + [f"agent 2: {a}" for a in actions], rows, "Team reward per joint action")


def _fmt_paper(ref, digits: int) -> str:
    return f"{ref[0]:.{digits}f} ± {ref[1]:.{digits}f}" if isinstance(ref, tuple) else f"{ref:.{digits}f}"


@dataclass
class ResultTable:
    """Scores per (task, method) over seeds beside the paper's table (see module docstring).

    ``cells[task][method]``: n, mean, se, iqm, iqm_low, iqm_high, scores; ``overall[method]``:
    the IQM over every task's runs with its stratified-bootstrap interval. A cell is marked
    when it disagrees with the paper: |mean - paper| > ``k`` combined standard errors and >
    ``floor`` (`within`; the paper's s.e. counts as 0 where it gives none).
    """

    title: str
    cells: dict
    overall: dict
    paper: Mapping
    display: Mapping[str, str]
    task_label: str = "task"
    k: float = 2.0
    floor: float = 0.05
    digits: int = 2

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping], paper: Mapping, title: str, display: Mapping[str, str] | None = None,
                  task_key: str = "task", task_label: str = "task", methods: Sequence[str] | None = None,
                  k: float = 2.0, floor: float = 0.05, seed: int = 0) -> "ResultTable":
        groups: dict = defaultdict(lambda: defaultdict(list))
        for r in rows:
            groups[str(r[task_key])][r["method"]].append(float(r["score"]))
        order = list(methods or [])
        order += [m for m in _method_order(paper, groups) if m not in order]
        order += sorted({m for ms in groups.values() for m in ms} - set(order))
        cells = {}
        for t, ms in groups.items():
            cells[t] = {}
            for m in order:
                if m in ms:
                    mean, se = mean_se(ms[m])
                    q, lo, hi = iqm_interval([ms[m]], seed=seed)
                    cells[t][m] = dict(n=len(ms[m]), mean=mean, se=se, iqm=q, iqm_low=lo, iqm_high=hi,
                                       scores=ms[m])
        overall = {}
        for m in order:
            per_task = [groups[t][m] for t in groups if m in groups[t]]
            if per_task:
                q, lo, hi = iqm_interval(per_task, seed=seed)
                overall[m] = dict(iqm=q, iqm_low=lo, iqm_high=hi, n=sum(map(len, per_task)), tasks=len(per_task))
        return cls(title, cells, overall, paper, dict(display or {}), task_label, k, floor)

    @property
    def methods(self) -> list[str]:
        return list(self.overall)

    def paper_value(self, task: str, method: str):
        return self.paper.get(task, {}).get(method)

    def agrees(self, task: str, method: str) -> bool | None:
        """None where the paper has no value or we have no runs."""
        ref, c = self.paper_value(task, method), self.cells.get(task, {}).get(method)
        if ref is None or c is None:
            return None
        return within((c["mean"], c["se"]), ref if isinstance(ref, tuple) else (ref, 0.0), self.k, self.floor)

    @property
    def rule(self) -> str:
        return (f"a cell is marked (red, *) when |ours − paper| > {self.k:g}·√(s.e.² + s.e.paper²) and > "
                f"{self.floor:g}, the paper's s.e. taken as 0 where it gives none")

    def _ci(self, c: Mapping) -> str:
        d = self.digits
        if math.isnan(c["iqm_low"]):
            return f"IQM {c['iqm']:.{d}f}"
        return f"IQM {c['iqm']:.{d}f} [{c['iqm_low']:.{d}f}, {c['iqm_high']:.{d}f}]"

    def table(self) -> Table:
        """The paper's layout: one row per task, one column per method; each cell holds our mean
        +- s.e., the IQM [95 % CI] and the paper's value; a last row has the IQM over tasks."""
        d, disp = self.digits, self.display
        header = [self.task_label] + [disp.get(m, m) for m in self.methods]
        rows, marks, html_cells = [], set(), {}
        for i, (t, ms) in enumerate(self.cells.items()):
            row = [t]
            for j, m in enumerate(self.methods, start=1):
                c, ref = ms.get(m), self.paper_value(t, m)
                if c is None:
                    row.append("-")
                    continue
                parts = [f"{c['mean']:.{d}f} ± {c['se']:.{d}f}", self._ci(c)]
                if ref is not None:
                    parts.append(f"paper {_fmt_paper(ref, d)}")
                row.append(" · ".join(parts))
                off = self.agrees(t, m) is False
                html_cells[(i, j)] = (f"<b>{html.escape(parts[0])}</b><br><small>{html.escape(parts[1])}</small>"
                                      + (f"<br><small style='color:#555'>{html.escape(parts[2])}{' *' if off else ''}"
                                         "</small>" if ref is not None else ""))
                if off:
                    marks.add((i, j))
            rows.append(row)
        n_tasks = len(self.cells)
        if n_tasks > 1:
            row = [f"all {self.task_label}s (IQM)"]
            for j, m in enumerate(self.methods, start=1):
                o = self.overall[m]
                runs = f"{o['n']} run{'s' if o['n'] != 1 else ''}"
                row.append(self._ci(o) + f" · {runs}")
                html_cells[(len(rows), j)] = f"<b>{html.escape(self._ci(o))}</b><br><small>{runs}</small>"
            rows.append(row)
        seeds = sorted({c["n"] for ms in self.cells.values() for c in ms.values()})
        caption = (f"{self.title}: normalised score over {'/'.join(map(str, seeds))} seed(s), mean ± s.e. "
                   "(the paper's statistic), IQM [95 % bootstrap CI]")
        note = ("IQM: interquartile mean; the 'all' row pools every task's runs, its interval is the stratified "
                "bootstrap of Agarwal et al. 2021 (scipy.stats.bootstrap, 10,000 resamples, percentile); no "
                "interval with one seed. " + self.rule[0].upper() + self.rule[1:] + ".")
        return Table(header, rows, caption, note, marks, html_cells)

    def agreement(self) -> str:
        """'k/n cells agree with the paper (rule)', or that the paper has no number for any cell
        (a dataset of your own)."""
        got = [a for t in self.cells for m in self.cells[t] if (a := self.agrees(t, m)) is not None]
        if not got:
            return "no cell has a number in the paper to compare with (another dataset or setting than the paper's)"
        return f"{sum(got)}/{len(got)} cells agree with the paper; {self.rule}"

    def long_rows(self) -> list[list]:
        """One row per (task, method): the numbers, for CSV."""
        out = [[self.task_label, "method", "seeds", "mean", "se", "iqm", "iqm_ci95_low", "iqm_ci95_high",
                "paper_mean", "paper_se", "agrees_with_paper"]]
        for t, ms in self.cells.items():
            for m, c in ms.items():
                ref = self.paper_value(t, m)
                pm, ps = (ref if isinstance(ref, tuple) else (ref, None)) if ref is not None else (None, None)
                out.append([t, m, c["n"], c["mean"], c["se"], c["iqm"], c["iqm_low"], c["iqm_high"], pm, ps,
                            self.agrees(t, m)])
        for m, o in self.overall.items():
            out.append([f"all {self.task_label}s", m, o["n"], None, None, o["iqm"], o["iqm_low"], o["iqm_high"],
                        None, None, None])
        return out

    def __repr__(self) -> str:
        return self.table().to_markdown()

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def save(self, folder: str | Path, name: str) -> list[Path]:
        """``<name>.csv`` (one row per task and method, every number), ``<name>.md`` and
        ``<name>.tex`` (the displayed table)."""
        from momawb.runs import atomic_write_bytes
        paths = self.table().save(folder, name)
        buf = io.StringIO()
        csv.writer(buf).writerows([["" if v is None else v for v in r] for r in self.long_rows()])
        atomic_write_bytes(paths[0], buf.getvalue().encode())
        return paths
