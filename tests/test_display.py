"""What the notebooks show: results tables with their statistics, learning curves, the team
viewer's frames (issue 15 items 3, 4, 6; issue 16's statistics)."""
import base64
import io
import math
import re

import numpy as np
import pytest
from scipy.stats import trim_mean

from momawb import plots, tables


def test_iqm_is_the_quartile_trimmed_mean():
    x = [0.0, 0.1, 0.2, 0.5, 0.6, 0.9, 1.0, 5.0]
    assert tables.iqm(x) == pytest.approx(np.mean([0.2, 0.5, 0.6, 0.9])) == pytest.approx(trim_mean(x, 0.25))


def test_iqm_interval_is_a_stratified_bootstrap():
    """Task A's runs all score 0, task B's all 1: a bootstrap that resamples each task on its own
    (stratified) always draws 2 zeros and 8 ones, so its IQM never moves; a bootstrap of the
    pooled runs would draw other mixes."""
    q, lo, hi = tables.iqm_interval([[0.0, 0.0], [1.0] * 8])
    assert q == lo == hi == pytest.approx(trim_mean([0.0] * 2 + [1.0] * 8, 0.25))
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.2, 0.1, 5), rng.normal(0.8, 0.1, 12)
    q, lo, hi = tables.iqm_interval([a, b], seed=3)
    # an independent stratified bootstrap, written out
    boot = [trim_mean(np.r_[rng.choice(a, len(a)), rng.choice(b, len(b))], 0.25) for _ in range(4000)]
    ref = np.percentile(boot, [2.5, 97.5])
    assert lo == pytest.approx(ref[0], abs=0.02) and hi == pytest.approx(ref[1], abs=0.02) and lo < q < hi
    assert math.isnan(tables.iqm_interval([[0.3]])[1])          # one seed: no interval


def _rows():
    out = []
    for task, ms in {"neutral": {"ibc": [0, 1, 0, 1, 0, 1, 0, 1, 0, 1], "iql": [1.0] * 10},
                     "unfavorable": {"ibc": [0.0] * 10, "iql": [1.0] * 9 + [0.0]}}.items():
        for m, scores in ms.items():
            out += [{"task": task, "method": m, "seed": s, "score": float(v)} for s, v in enumerate(scores)]
    return out


def test_result_table_marks_cells_that_disagree(tmp_path):
    paper = {"neutral": {"ibc": (0.55, 0.11), "iql": (1.0, 0.0)}, "unfavorable": {"ibc": (0.0, 0.0), "iql": 0.5}}
    t = tables.ResultTable.from_rows(_rows(), paper, "Table 3", {"ibc": "IBC", "iql": "IQL"}, task_label="dataset")
    assert t.agrees("neutral", "ibc") and t.agrees("unfavorable", "ibc")
    assert t.agrees("unfavorable", "iql") is False                 # 0.9 +- 0.1 against 0.5 (no s.e.)
    c = t.cells["unfavorable"]["iql"]
    assert (c["mean"], c["iqm"], c["iqm_high"]) == (pytest.approx(0.9), 1.0, 1.0)
    grid = t.table()
    assert grid.header == ["dataset", "IBC", "IQL"] and grid.marks == {(1, 2)}  # the paper's order
    assert grid.rows[2][0] == "all datasets (IQM)" and "20 runs" in grid.rows[2][1]
    html = t._repr_html_()
    assert html.count("<tr>") == 4 and "background:#fde0dd" in html and "stratified" in html
    assert re.search(r"\| 0.90 ± 0.10 · IQM 1.00 \[0.\d\d, 1.00\] · paper 0.50 \* \|", repr(t))
    assert t.agreement().startswith("3/4 cells agree with the paper")
    own = tables.ResultTable.from_rows(_rows(), {}, "Table 3 (own data)", task_label="dataset")
    assert own.agreement().startswith("no cell has a number in the paper")        # not "0/0 cells agree"
    paths = t.save(tmp_path, "table3")
    assert [p.name for p in paths] == ["table3.csv", "table3.md", "table3.tex"]
    csv_lines = paths[0].read_text().splitlines()
    assert csv_lines[0].startswith("dataset,method,seeds,mean,se,iqm,iqm_ci95_low") and len(csv_lines) == 7
    tex = paths[2].read_text()
    assert r"\begin{tabular}{lcc}" in tex and r"$\pm$" in tex and r"$^\dagger$" in tex


def test_plain_table_renders_as_html_and_markdown(tmp_path):
    t = tables.Table(["a", "b_c"], [["1 & 2", "50 %"]], "caption")
    assert "<table class='momawb-table'>" in t._repr_html_() and "| 1 & 2 | 50 % |" in repr(t)
    assert r"1 \& 2 & 50 \%" in t.to_latex() and "b\\_c" in t.to_latex()


def test_learning_curves_one_panel_per_method_on_its_own_axis():
    rows = [{"method": m, "task": t, "seed": s, "curve": [(k * (50 if m == "moma_ppo" else 5000), 0.1 * k + s)
                                                          for k in range(1, 5)]}
            for m in ("moma_ppo", "ibc", "iql") for t in ("fo", "leader") for s in range(3)]
    fig = plots.learning_curves(rows, display={"moma_ppo": "MOMA-PPO", "ibc": "IBC", "iql": "IQL"}, smoothing=0.8)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["IQL", "IBC", "MOMA-PPO"]                           # the paper's method order
    assert fig.layout.xaxis3.title.text.startswith("learning iterations") and fig.layout.xaxis.title.text == "gradient steps"
    means = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(means) == 6
    colors = {t.name.split(" / ")[0]: set() for t in means}
    for t in means:
        colors[t.name.split(" / ")[0]].add(t.line.color)
    assert all(len(c) == 1 for c in colors.values()) and len({c.pop() for c in colors.values()}) == 3
    dashes = {t.name.split(" / ")[1]: t.line.dash for t in means}
    assert dashes == {"fo": "solid", "leader": "dash"}
    legend = [t.name for t in fig.data if t.showlegend is not False and t.name]
    assert legend == ["fo", "leader"]                                     # one entry per setting, no scroll
    moma = next(t for t in means if t.name == "MOMA-PPO / fo")
    assert list(moma.x) == [50, 100, 150, 200]
    raw = np.mean([[0.1 * k + s for k in range(1, 5)] for s in range(3)], 0)
    assert moma.y[0] == pytest.approx(raw[0]) and moma.y[-1] < raw[-1]  # smoothed: lags the rise


def test_smoothing_is_tensorboards_debiased_ema():
    y = [1.0, 0.0, 0.0]
    s = plots.smooth(y, 0.8)
    assert s[0] == 1.0 and s[1] == pytest.approx(0.8 / 1.8) and s[2] == pytest.approx(0.64 / 2.44)
    assert list(plots.smooth(y, 0.0)) == y


def test_live_curves_only_when_live():
    assert plots.LiveCurves(["ibc"], ["fo"], live=False).fig is None
    c = plots.LiveCurves(["ibc", "moma_ppo"], ["fo", "leader"], live=True)
    c.add({"method": "moma_ppo", "task": "leader", "seed": 0, "curve": [(1, 0.1), (2, 0.3)]})
    assert c.fig.data[0].line.dash == "dash" and c.fig.data[0].xaxis == "x2"


def test_team_viewer_frames_are_shown_at_their_size():
    """Issue 15 item 6: the GIF was 160 px stretched about 5.5 times; now it is rendered at the
    size it is shown at (here the static view an executed notebook keeps)."""
    from PIL import Image

    from momawb import domains, render
    from momawb.estimate import RandomTeam
    domain = domains.make("reacher")
    view = render.team_viewer([{"method": "ibc", "task": "fo", "seed": 0}], lambda r: RandomTeam(domain),
                              lambda r: domain, episodes=1, size=200, live=False)
    html = view.data
    gif = re.search(r"data:image/gif;base64,([^']+)' width='(\d+)' height='(\d+)'", html)
    img = Image.open(io.BytesIO(base64.b64decode(gif.group(1))))
    assert img.size == (200, 200) == (int(gif.group(2)), int(gif.group(3)))
    assert img.n_frames == 25 and len(base64.b64decode(gif.group(1))) < 300_000
