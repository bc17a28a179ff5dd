"""The paper's result tables as data, and measured tables built beside them.

Numbers are PAPER.md section 6-7 (normalised scores; mean +- standard error where the paper
gives one). Measured tables are built from ``results.json`` rows (method, dataset/task, seed,
score), never typed in.
"""
from __future__ import annotations

import html
from collections import defaultdict
from typing import Iterable, Mapping

from momawb.evaluation import mean_se

__all__ = ["TABLE1", "TABLE2_REACHER", "TABLE3", "TABLE4A", "TABLE4B", "TABLE5", "aggregate",
           "side_by_side", "to_markdown", "to_html", "within", "mean_se"]

#: Table 1: game datasets -> (P(a1=right), P(a2=right), dataset average score)
TABLE1 = {
    "favorable": (0.75, 0.75, 0.623),
    "neutral": (0.5, 0.5, 0.502),
    "unfavorable": (0.25, 0.75, 0.375),
}

#: Table 2 (Reacher expert-mix dataset): normalised score statistics in %
TABLE2_REACHER = {"min": 38.8, "mean": 100.0, "median": 98.9, "max": 152.3}

#: Table 3: dataset -> method -> (mean, s.e.) over 10 seeds
TABLE3 = {
    "favorable": {"iql": (1.0, 0.0), "maiql": (1.0, 0.0), "ibc": (1.0, 0.0), "moma_ppo": (1.0, 0.0)},
    "neutral": {"iql": (1.0, 0.0), "maiql": (0.9, 0.1), "ibc": (0.55, 0.11), "moma_ppo": (1.0, 0.0)},
    "unfavorable": {"iql": (1.0, 0.0), "maiql": (0.0, 0.0), "ibc": (0.0, 0.0), "moma_ppo": (1.0, 0.0)},
}

_4A_METHODS = ["iql", "maiql", "matd3bc", "ibc", "itd3bc", "icql", "iomar", "moma_ppo"]
_4A = {
    "fo": [1.07, 0.96, 1.04, 1.02, 0.78, 0.48, 0.73, 1.07],
    "independent": [None, 0.92, 0.59, 0.76, 0.30, 0.46, 0.45, 0.95],
    "leader": [None, 0.80, 0.73, 0.84, 0.48, 0.31, 0.39, 1.00],
}
#: Table 4a: Reacher observation setting -> method -> mean (the paper gives no s.e. here)
TABLE4A = {task: {m: v for m, v in zip(_4A_METHODS, vals) if v is not None} for task, vals in _4A.items()}

_4B_METHODS = ["iql", "maiql", "maiql_ft", "ibc", "itd3bc", "icql", "iomar", "moma_ppo"]
_4B = {
    "fo-random": [0.12, 0.28, 0.28, 0.31, 0.22, 0.08, 0.08, 0.52],
    "fo-medium": [0.97, 0.85, 0.81, 0.84, 1.04, 0.88, 1.10, 1.29],
    "fo-full-replay": [1.22, 0.77, 0.95, 1.20, 1.33, 1.21, 1.30, 1.42],
    "fo-expert": [1.26, 1.24, 1.06, 1.24, 1.25, 0.73, 1.16, 1.49],
    "po-random": [None, 0.31, 0.34, 0.31, 0.31, 0.17, 0.21, 0.42],
    "po-medium": [None, 0.14, 0.11, 0.17, 0.22, 0.09, 0.06, 0.54],
    "po-full-replay": [None, 0.18, -0.07, 0.21, 0.20, 0.09, 0.11, 0.46],
    "po-expert": [None, -0.16, -0.23, 0.05, 0.16, 0.11, 0.10, 0.18],
}
#: Table 4b: Ant task -> method -> mean
TABLE4B = {task: {m: v for m, v in zip(_4B_METHODS, vals) if v is not None} for task, vals in _4B.items()}

#: Table 5: Ant task -> {"model": MOMA-PPO with the learned model, "simulator": ground truth}
TABLE5 = {
    "fo-random": {"model": 0.52, "simulator": 1.17}, "fo-medium": {"model": 1.29, "simulator": 1.68},
    "fo-full-replay": {"model": 1.42, "simulator": 1.66}, "fo-expert": {"model": 1.49, "simulator": 1.71},
    "po-random": {"model": 0.42, "simulator": 0.47}, "po-medium": {"model": 0.54, "simulator": 0.81},
    "po-full-replay": {"model": 0.46, "simulator": 0.84}, "po-expert": {"model": 0.18, "simulator": 0.43},
}


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
