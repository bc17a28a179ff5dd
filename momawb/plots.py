"""Plotly figures and widgets for the notebooks.

Where each kind of output shows (measured: ``shared/reference/notebook-tooling.md`` section 2.4):

* ``fig.show()`` after `use_notebook_renderers` stores plotly's JSON (JupyterLab and VS Code
  draw it, trusted or not) *and* an HTML copy that loads plotly.js from its CDN (nbconvert
  ``--to html`` and nbviewer draw that one); no copy of plotly.js goes into the notebook.
* A ``go.FigureWidget`` updates live in JupyterLab, but an executed file keeps only its stale
  initial state plus a 5 MB copy of plotly.js, so `LiveCurves` makes one only when ``live``
  (JupyterLab) and `LiveCurves.close` removes it once the static `learning_curves` figure can
  be shown. Under papermill, nbconvert or nbval the notebooks run with ``live`` False.

Learning curves (`learning_curves`): one panel per method, each on its own step axis (MOMA-PPO
counts learning iterations of rollouts + a MAPPO update, the baselines gradient steps, so one
shared axis would squash one of them), one colour per method, one line style per dataset or
observation setting, and optional TensorBoard-style smoothing (the paper uses 0.8).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

__all__ = ["LiveCurves", "learning_curves", "smooth", "method_colors", "convention_figure", "convention_fractions",
           "calibration_figure", "state_norm_figure", "dataset_explorer", "use_notebook_renderers",
           "STEP_UNITS"]

#: Reacher episode labels (`momawb.conventions`) and their colours
CONVENTION_COLORS = {"ccw": "#1f77b4", "cw": "#ff7f0e", "straight": "#bbbbbb", "miscoordinated": "#d62728"}

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f"]
#: one line style per dataset / observation setting
DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
#: what one learning step of a method is (the x axis of its panel); default: gradient steps
STEP_UNITS = {"moma_ppo": "learning iterations (rollouts + MAPPO update)", "world_model": "gradient steps"}
#: the order methods appear in (the paper's column order)
METHOD_ORDER = ["iql", "maiql", "maiql_ft", "matd3bc", "ibc", "itd3bc", "icql", "iomar", "moma_ppo"]


def use_notebook_renderers() -> None:
    """``fig.show()`` emits plotly's JSON and an HTML copy (plotly.js from its CDN, no MathJax)."""
    import plotly.io as pio
    from plotly.io.base_renderers import MimetypeRenderer

    class HtmlCopy(MimetypeRenderer):
        def to_mimebundle(self, fig_dict):
            return {"text/html": pio.to_html(fig_dict, include_plotlyjs="cdn", include_mathjax=False,
                                             full_html=False, default_width="100%", validate=False)}

    pio.renderers["momawb_html"] = HtmlCopy()
    pio.renderers.default = "plotly_mimetype+momawb_html"


def method_colors(methods: Iterable[str]) -> dict[str, str]:
    """One colour per method, fixed by the paper's method order (same colour in every figure)."""
    order = METHOD_ORDER + sorted(set(methods) - set(METHOD_ORDER))
    return {m: PALETTE[order.index(m) % len(PALETTE)] for m in methods}


def smooth(y: Sequence[float], weight: float) -> np.ndarray:
    """TensorBoard's exponential moving average with bias correction: s_t = w s_{t-1} + (1-w) y_t,
    divided by 1 - w^t (the paper's curves use w = 0.8; 0 = raw)."""
    y = np.asarray(y, np.float64)
    if weight <= 0 or len(y) == 0:
        return y
    out, last = np.empty_like(y), 0.0
    for t, v in enumerate(y):
        last = weight * last + (1 - weight) * v
        out[t] = last / (1 - weight ** (t + 1))
    return out


def _figure(live: bool) -> go.Figure:
    if live:
        try:
            return go.FigureWidget()
        except ImportError:  # anywidget missing: fall back to a static figure
            pass
    return go.Figure()


def _panels(methods: Sequence[str], display: Mapping[str, str], title: str, cols: int = 4,
            units: Mapping[str, str] | None = None) -> go.Figure:
    from plotly.subplots import make_subplots
    n = max(1, len(methods))
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[display.get(m, m) for m in methods],
                        horizontal_spacing=0.06, vertical_spacing=0.16 if rows > 1 else 0.1, shared_yaxes=True)
    for i, m in enumerate(methods):
        fig.update_xaxes(title_text=(units or STEP_UNITS).get(m, "gradient steps"), title_font_size=11,
                         row=i // cols + 1, col=i % cols + 1)
    for r in range(rows):
        fig.update_yaxes(title_text="normalised score", row=r + 1, col=1)
    fig.update_layout(title=title, height=150 + 260 * rows, margin=dict(l=60, r=20, t=80, b=50),
                      legend=dict(orientation="h", yanchor="bottom", y=1.04, xanchor="right", x=1))
    return fig


def _cell(i: int, cols: int) -> dict:
    return {"row": i // cols + 1, "col": i % cols + 1}


class LiveCurves:
    """Learning curves that appear as runs finish, in JupyterLab: a FigureWidget with one panel
    per method and one thin line per run (colour = method, line style = task). With ``live``
    False it draws nothing (the static `learning_curves` figure follows the training cell)."""

    def __init__(self, methods: Sequence[str], tasks: Sequence[str], display: Mapping[str, str] | None = None,
                 live: bool = True, task_key: str = "task", title: str = "learning curves as runs finish",
                 units: Mapping[str, str] | None = None):
        self.methods, self.tasks, self.task_key = list(methods), [str(t) for t in tasks], task_key
        self.display, self.live = dict(display or {}), live
        self.colors = method_colors(self.methods)
        self.fig = None
        if live:
            try:
                self.fig = go.FigureWidget(_panels(self.methods, self.display, title, self._cols, units))
            except ImportError:  # anywidget missing: no live plot, the static figure still follows
                self.fig = None

    @property
    def _cols(self) -> int:
        return min(4, len(self.methods) or 1)

    def show(self) -> None:
        """Display the live figure (nothing when not live)."""
        if self.fig is not None:
            from IPython.display import display
            display(self.fig)

    def add(self, row: Mapping) -> None:
        """Draw ``row``'s curve (a finished run's result row)."""
        if self.fig is None or not row.get("curve") or row["method"] not in self.methods:
            return
        xs, ys = zip(*row["curve"])
        task = str(row[self.task_key])
        dash = DASHES[self.tasks.index(task) % len(DASHES)] if task in self.tasks else "solid"
        self.fig.add_trace(go.Scatter(x=list(xs), y=list(ys), mode="lines", name=task, legendgroup=task,
                                      showlegend=False, opacity=0.7, hovertext=f"{task}, seed {row.get('seed')}",
                                      line=dict(color=self.colors[row["method"]], dash=dash, width=1.2)),
                           **_cell(self.methods.index(row["method"]), self._cols))

    def close(self) -> None:
        """Remove the live widget (its saved state would be stale); show `learning_curves` next."""
        if self.fig is not None and hasattr(self.fig, "close"):
            self.fig.close()


def learning_curves(rows: Iterable[Mapping], methods: Sequence[str] | None = None, task_key: str = "task",
                    display: Mapping[str, str] | None = None, smoothing: float = 0.0, tasks: Sequence[str] | None = None,
                    title: str = "", units: Mapping[str, str] | None = None) -> go.Figure:
    """Greedy-evaluation score during training: one panel per method on its own step axis, the
    mean over seeds per task (line style) with a +-1 s.e. band and each seed as a faint line.

    ``rows`` are result rows with ``curve`` [(step, score), ...]; ``smoothing`` is the weight of
    `smooth` applied to every seed's curve before averaging (the paper: 0.8). ``units`` names each
    method's step (default `STEP_UNITS`; e.g. MOMA-PPO's iterations for ablation variants)."""
    rows = [r for r in rows if r.get("curve")]
    display = dict(display or {})
    present = {r["method"] for r in rows}
    methods = [m for m in (methods or METHOD_ORDER + sorted(present - set(METHOD_ORDER))) if m in present]
    tasks = [str(t) for t in (tasks or sorted({str(r[task_key]) for r in rows}))]
    colors = method_colors(methods)
    cols = min(4, len(methods) or 1)
    sm = f", smoothed (EMA {smoothing:g})" if smoothing > 0 else ""
    fig = _panels(methods, display, title or f"learning curves: mean over seeds ± s.e., seeds faint{sm}", cols, units)
    groups: dict = defaultdict(list)
    for r in rows:
        groups[(r["method"], str(r[task_key]))].append(np.asarray(r["curve"], np.float64))
    for i, m in enumerate(methods):
        for t in tasks:
            curves = groups.get((m, t))
            if not curves:
                continue
            n = min(len(c) for c in curves)
            x = curves[0][:n, 0]
            y = np.stack([smooth(c[:n, 1], smoothing) for c in curves])
            mean = y.mean(0)
            se = y.std(0, ddof=1) / np.sqrt(len(y)) if len(y) > 1 else np.zeros_like(mean)
            dash = DASHES[tasks.index(t) % len(DASHES)]
            where = _cell(i, cols)
            for k, ys in enumerate(y):
                fig.add_trace(go.Scatter(x=x, y=ys, mode="lines", legendgroup=t, showlegend=False, hoverinfo="skip",
                                         line=dict(color=colors[m], dash=dash, width=0.7), opacity=0.25), **where)
            if len(y) > 1:
                fig.add_trace(go.Scatter(x=np.r_[x, x[::-1]], y=np.r_[mean + se, (mean - se)[::-1]], fill="toself",
                                         fillcolor=colors[m], opacity=0.15, line=dict(width=0), legendgroup=t,
                                         showlegend=False, hoverinfo="skip"), **where)
            fig.add_trace(go.Scatter(x=x, y=mean, mode="lines+markers", marker=dict(size=4), legendgroup=t,
                                     showlegend=False, name=f"{display.get(m, m)} / {t}",
                                     line=dict(color=colors[m], dash=dash, width=2)), **where)
    for k, t in enumerate(tasks):  # the legend: one entry per task (line style), toggling every panel
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=t, legendgroup=t,
                                 line=dict(color="#444", dash=DASHES[k % len(DASHES)], width=2)), row=1, col=1)
    fig.update_layout(legend_title_text=task_key)
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


def state_norm_figure(norms: Mapping[str, Mapping], title: str = "") -> go.Figure:
    """The no-clipping plot: ``norms`` maps a label (whose actions: the dataset's, a team's) to a
    `momawb.calibration.rollout_state_norms` output; per label, the median and 90th percentile
    of ||s_hat|| along the rollouts with the bounding-box clip (solid) and without (dashed), on a
    log axis, against the dataset's 99th percentile and maximum (grey lines)."""
    fig = go.Figure()
    data, k = None, 1
    for i, (label, out) in enumerate(norms.items()):
        data = out["dataset"]
        for name, dash in (("clipped", "solid"), ("unclipped", "dash")):
            k = out[name].shape[1]
            x = np.arange(1, k + 1)
            for q, width in ((50, 2.5), (90, 1)):
                fig.add_trace(go.Scatter(x=x, y=np.percentile(out[name], q, axis=0), mode="lines+markers",
                                         name=f"{label}: {name}, {'median' if q == 50 else '90th pct'}",
                                         line=dict(color=PALETTE[i % len(PALETTE)], dash=dash, width=width)))
    if data is not None:   # traces, not add_hline annotations (those take log10 units on a log axis)
        for q, dash in (("p99", "dot"), ("max", "dash")):
            fig.add_trace(go.Scatter(x=[1, k], y=[data[q], data[q]], mode="lines", name=f"dataset {q} ({data[q]:.3g})",
                                     line=dict(color="#888", dash=dash)))
    fig.update_layout(title=title or "norm of predicted states along model rollouts, with and without the clip",
                      xaxis_title="rollout step", yaxis_title="||s_hat|| (log)", yaxis_type="log", height=420)
    return fig


def dataset_explorer(sample: Callable[[tuple[float, ...]], tuple[np.ndarray, float, float]], n_agents: int = 2,
                     initial: Sequence[float] = (0.5, 0.5), live: bool = True):
    """Sliders for P(agent i plays right) -> the dataset's action histogram and score.

    ``sample(p_right)`` returns (joint-action counts over 2**n_agents, measured score,
    expected score). Returns the widget (an ``ipywidgets.VBox``) when ``live``, else the
    static figure at ``initial`` (what an executed file can show).
    """
    names = ["-".join("R" if (k >> (n_agents - 1 - i)) & 1 else "L" for i in range(n_agents))
             for k in range(2 ** n_agents)]

    def describe(p, measured, expected) -> str:
        ps = ", ".join(f"{x:.2f}" for x in p)
        return (f"P(right) = ({ps}): dataset score {measured:.3f} (expected {expected:.3f}: "
                "P(all agents pick the same action))")

    if not live:
        counts, measured, expected = sample(tuple(float(x) for x in initial))
        fig = go.Figure(go.Bar(x=names, y=list(counts), marker_color=PALETTE[0]))
        fig.update_layout(title=f"joint actions in the dataset, {describe(initial, measured, expected)}<br>"
                                "<sup>sliders for the probabilities when the notebook runs in JupyterLab</sup>",
                          yaxis_title="transitions", height=340, margin=dict(l=50, r=20, t=70, b=30))
        return fig
    import ipywidgets as W
    sliders = [W.FloatSlider(value=float(initial[i]), min=0.0, max=1.0, step=0.05,
                             description=f"P(agent {i + 1} right)", style={"description_width": "initial"},
                             continuous_update=False) for i in range(n_agents)]
    fig = _figure(True)
    fig.add_trace(go.Bar(x=names, y=[0] * len(names), marker_color=PALETTE[0]))
    fig.update_layout(title="joint actions in the dataset", yaxis_title="transitions", height=300,
                      margin=dict(l=50, r=20, t=40, b=30))
    score = W.HTML()

    def refresh(_=None) -> None:
        p = tuple(s.value for s in sliders)
        counts, measured, expected = sample(p)
        fig.data[0].y = list(counts)
        score.value = f"<b>{describe(p, measured, expected)}</b>"

    for s in sliders:
        s.observe(refresh, names="value")
    refresh()
    return W.VBox([W.HBox(sliders), score, fig])
