"""Plotly figures and widgets for the notebooks.

Live plots follow ``shared/reference/notebook-tooling.md`` section 2.4: a ``go.FigureWidget``
updates live in JupyterLab, but its saved state is stale in an executed file, so every live
plot also has `static()` to show the final figure as a plain ``go.Figure`` (which papermill
stores and nbviewer-like tools render).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

__all__ = ["LiveCurves", "mean_curves", "convention_figure", "convention_fractions", "calibration_figure", "payoff_html",
           "dataset_explorer", "table_html"]

#: Reacher episode labels (`momawb.conventions`) and their colours
CONVENTION_COLORS = {"ccw": "#1f77b4", "cw": "#ff7f0e", "straight": "#bbbbbb", "miscoordinated": "#d62728"}

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _figure(live: bool) -> go.Figure:
    if live:
        try:
            return go.FigureWidget()
        except ImportError:  # anywidget missing: fall back to a static figure
            pass
    return go.Figure()


class LiveCurves:
    """Learning curves that grow as runs finish: one trace per (group, run)."""

    def __init__(self, title: str, live: bool = True, x_title: str = "learning step",
                 y_title: str = "normalised score"):
        self.fig = _figure(live)
        self.fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=380,
                               margin=dict(l=50, r=20, t=50, b=40), legend_title="method")
        self._colors: dict[str, str] = {}
        self._shown: set[str] = set()

    def add(self, group: str, xs: Sequence[float], ys: Sequence[float], label: str = "") -> None:
        color = self._colors.setdefault(group, PALETTE[len(self._colors) % len(PALETTE)])
        first = group not in self._shown
        self._shown.add(group)
        self.fig.add_trace(go.Scatter(x=list(xs), y=list(ys), mode="lines", name=group, legendgroup=group,
                                      showlegend=first, line=dict(color=color, width=1.2), opacity=0.6,
                                      hovertext=label))

    def static(self) -> go.Figure:
        return go.Figure(self.fig.to_dict())


def mean_curves(rows: Iterable[Mapping], group_by: Sequence[str] = ("method", "dataset"),
                title: str = "learning curves (mean over seeds)", display: Mapping[str, str] | None = None) -> go.Figure:
    """Mean +- s.e. curve per group from result rows with a ``curve`` [(step, score), ...]."""
    display = display or {}
    groups: dict = defaultdict(list)
    for r in rows:
        if r.get("curve"):
            groups[" / ".join(display.get(str(r[k]), str(r[k])) for k in group_by)].append(np.asarray(r["curve"], float))
    fig = go.Figure()
    for i, (name, curves) in enumerate(sorted(groups.items())):
        n = min(len(c) for c in curves)
        arr = np.stack([c[:n] for c in curves])
        x, y = arr[0, :, 0], arr[:, :, 1]
        m = y.mean(0)
        se = y.std(0, ddof=1) / np.sqrt(len(y)) if len(y) > 1 else np.zeros_like(m)
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=np.r_[x, x[::-1]], y=np.r_[m + se, (m - se)[::-1]], fill="toself",
                                 fillcolor=color, opacity=0.15, line=dict(width=0), showlegend=False,
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=x, y=m, name=name, line=dict(color=color)))
    fig.update_layout(title=title, xaxis_title="learning step", yaxis_title="normalised score", height=420)
    return fig


def convention_figure(rows: Iterable[Mapping], labels: Callable[[Sequence], str], title: str,
                      display: Mapping[str, str] | None = None) -> go.Figure:
    """Stacked bars: for each (dataset, method), how many seeds' teams picked each convention.

    ``labels(joint_action)`` names a team's greedy joint action (e.g. 'left-left').
    """
    display = display or {}
    counts: dict = defaultdict(lambda: defaultdict(int))
    for r in rows:
        counts[labels(r["greedy_joint_action"])][(r["dataset"], display.get(r["method"], r["method"]))] += 1
    keys = sorted({k for c in counts.values() for k in c})
    x = [[k[0] for k in keys], [k[1] for k in keys]]
    fig = go.Figure()
    for i, (name, c) in enumerate(sorted(counts.items())):
        fig.add_trace(go.Bar(x=x, y=[c.get(k, 0) for k in keys], name=name,
                             marker_color=PALETTE[i % len(PALETTE)]))
    fig.update_layout(barmode="stack", title=title, yaxis_title="seeds", height=420,
                      legend_title="joint action")
    return fig


def convention_fractions(rows: Iterable[Mapping], display: Mapping[str, str] | None = None,
                         order: Sequence[str] | None = None, title: str = "") -> go.Figure:
    """Stacked bars per (setting, method): the fraction of greedy evaluation episodes that bend
    the elbow counter-clockwise, clockwise, end straight, or are mis-coordinated (rows carry
    `momawb.conventions.measure_conventions` output under ``conventions``; mean over seeds)."""
    display = display or {}
    groups: dict = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["method"])].append(r["conventions"])
    methods = list(order or sorted({m for _, m in groups}))
    keys = sorted(groups, key=lambda k: (k[0] != "fo", k[0], methods.index(k[1]) if k[1] in methods else 99))
    x = [[k[0] for k in keys], [display.get(k[1], k[1]) for k in keys]]
    fig = go.Figure()
    for name, color in CONVENTION_COLORS.items():
        y = [float(np.mean([c[name] for c in groups[k]])) for k in keys]
        fig.add_trace(go.Bar(x=x, y=y, name=name, marker_color=color))
    fig.update_layout(barmode="stack", title=title or "greedy episodes by elbow convention (mean over seeds)",
                      yaxis_title="fraction of episodes", yaxis_range=[0, 1], height=440, legend_title="episode")
    return fig


def calibration_figure(cal: Mapping, title: str = "") -> go.Figure:
    """eps_g beside the world model's real error (`momawb.calibration.calibration` output): left,
    one-step held-out transitions (log-log scatter); right, the median of both along k-step
    rollouts replayed in the ground-truth simulator (when ``cal["rollout"]`` exists)."""
    from plotly.subplots import make_subplots
    one, roll = cal["one_step"], cal.get("rollout")
    fig = make_subplots(rows=1, cols=2 if roll else 1, subplot_titles=(
        f"one step (Spearman {cal['spearman']['one_step']:.2f})",
        *(["k-step rollouts vs the simulator (median)"] if roll else [])))
    n = min(len(one["eps_g"]), 3000)
    fig.add_trace(go.Scattergl(x=one["eps_g"][:n], y=one["error"][:n], mode="markers", name="transition",
                               marker=dict(size=3, opacity=0.4, color=PALETTE[0])), 1, 1)
    fig.update_xaxes(type="log", title_text="eps_g (norm of a covariance: squared units)", row=1, col=1)
    fig.update_yaxes(type="log", title_text="real error ||[s_hat' - s', r_bar - r]||", row=1, col=1)
    if roll:
        steps = np.arange(1, roll["eps_g"].shape[1] + 1)
        fig.add_trace(go.Scatter(x=steps, y=np.nanmedian(roll["error"], 0), name="real error",
                                 line=dict(color=PALETTE[1])), 1, 2)
        fig.add_trace(go.Scatter(x=steps, y=np.nanmedian(roll["eps_g"], 0), name="eps_g",
                                 line=dict(color=PALETTE[0], dash="dash")), 1, 2)
        fig.update_xaxes(title_text="rollout step", row=1, col=2)
        fig.update_yaxes(type="log", row=1, col=2)
    fig.update_layout(title=title or "does the ensemble know where it is wrong?", height=420)
    return fig


def payoff_html(actions: Sequence[str], reward: Callable[[Sequence[int]], float]) -> str:
    """The two-agent payoff matrix as an HTML table."""
    head = "".join(f"<th>agent 2: {a}</th>" for a in actions)
    body = "".join(f"<tr><th>agent 1: {a}</th>" + "".join(f"<td style='text-align:center'>{reward((i, j)):g}</td>"
                                                          for j in range(len(actions))) + "</tr>"
                   for i, a in enumerate(actions))
    return f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>"


def table_html(rows: list[list[str]], caption: str = "") -> str:
    from momawb.tables import to_html
    return (f"<p><b>{caption}</b></p>" if caption else "") + to_html(rows)


def dataset_explorer(sample: Callable[[tuple[float, ...]], tuple[np.ndarray, float, float]], n_agents: int = 2,
                     initial: Sequence[float] = (0.5, 0.5)):
    """Sliders for P(agent i plays right) -> the dataset's action histogram and score.

    ``sample(p_right)`` returns (joint-action counts over 2**n_agents, measured score,
    expected score). Returns the widget (an ``ipywidgets.VBox``).
    """
    import ipywidgets as W
    sliders = [W.FloatSlider(value=float(initial[i]), min=0.0, max=1.0, step=0.05,
                             description=f"P(agent {i + 1} right)", style={"description_width": "initial"},
                             continuous_update=False) for i in range(n_agents)]
    names = ["-".join("R" if (k >> (n_agents - 1 - i)) & 1 else "L" for i in range(n_agents))
             for k in range(2 ** n_agents)]
    fig = _figure(True)
    fig.add_trace(go.Bar(x=names, y=[0] * len(names), marker_color=PALETTE[0]))
    fig.update_layout(title="joint actions in the dataset", yaxis_title="transitions", height=300,
                      margin=dict(l=50, r=20, t=40, b=30))
    score = W.HTML()

    def refresh(_=None) -> None:
        counts, measured, expected = sample(tuple(s.value for s in sliders))
        fig.data[0].y = list(counts)
        score.value = (f"<b>dataset score</b> {measured:.3f} (expected {expected:.3f}: "
                       "P(all agents pick the same action))")

    for s in sliders:
        s.observe(refresh, names="value")
    refresh()
    return W.VBox([W.HBox(sliders), score, fig])
