"""momawb.convergence: is a learning curve still rising where the preset stops it?"""
import math

import numpy as np
import pytest

from momawb.convergence import climbing_table, late_trend, still_climbing


def curves(shape, seeds=3, noise=0.02, points=10, steps=10_000):
    rng = np.random.default_rng(0)
    x = np.linspace(steps / points, steps, points)
    return [[(int(s), float(shape(s / steps) + noise * rng.standard_normal())) for s in x] for _ in range(seeds)]


def test_rising_saturated_and_falling_curves():
    rising = late_trend(curves(lambda f: f))                      # linear: +0.1 per 10 % of the run
    assert rising["verdict"] == "still climbing" and rising["slope"] == pytest.approx(0.1, abs=0.02)
    assert rising["final"] == pytest.approx(1.0, abs=0.05)
    saturated = late_trend(curves(lambda f: 1 - math.exp(-20 * f)))
    assert saturated["verdict"] == "flat"
    assert late_trend(curves(lambda f: -f))["verdict"] == "falling"
    assert late_trend(curves(lambda f: f, noise=2.0))["verdict"] != "still climbing"   # noise hides a small rise


def test_too_few_points_and_bad_fraction():
    assert late_trend([[(100, 0.1), (200, 0.2)]])["verdict"] is None
    assert late_trend([])["verdict"] is None
    with pytest.raises(ValueError, match="fraction"):
        late_trend(curves(lambda f: f), fraction=0)


def test_climbing_table_marks_rising_cells_and_skips_diverged_rows():
    rows = ([{"method": "a", "task": "fo", "curve": c} for c in curves(lambda f: f)]
            + [{"method": "b", "task": "fo", "curve": c} for c in curves(lambda f: 0.5)]
            + [{"method": "b", "task": "po", "curve": [(1, 0.0)] * 5, "diverged": "nan"}])
    table = climbing_table(rows, display={"a": "A"})
    assert [r[:2] for r in table.rows] == [["A", "fo"], ["b", "fo"]]
    assert still_climbing(table) == ["A (fo)"] and table.marks == {(0, 6)}
    assert "still climbing *" in table.to_markdown()
