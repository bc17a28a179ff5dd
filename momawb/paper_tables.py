"""The paper's result tables as data (PAPER.md sections 6-7): normalised scores, mean +- standard
error where the paper gives one. `momawb.tables` builds measured tables beside them (and
re-exports these names).
"""
from __future__ import annotations

__all__ = ["TABLE1", "TABLE2_REACHER", "TABLE2_ANT", "TABLE3", "TABLE4A", "TABLE4B", "TABLE5"]

#: Table 1: game datasets -> (P(a1=right), P(a2=right), dataset average score)
TABLE1 = {
    "favorable": (0.75, 0.75, 0.623),
    "neutral": (0.5, 0.5, 0.502),
    "unfavorable": (0.25, 0.75, 0.375),
}

#: Table 2 (Reacher expert-mix dataset): normalised score statistics in %
TABLE2_REACHER = {"min": 38.8, "mean": 100.0, "median": 98.9, "max": 152.3}

#: Table 2 (D4RL Ant datasets): normalised return statistics in % of D4RL's references
TABLE2_ANT = {name: dict(zip(("min", "mean", "median", "max"), vals)) for name, vals in {
    "random": (-3.0, 6.4, 7.2, 10.3), "medium": (-4.8, 80.2, 95.1, 107.2),
    "full-replay": (-22.4, 72.0, 77.8, 134.3), "expert": (-32.8, 117.4, 129.4, 142.5)}.items()}

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
