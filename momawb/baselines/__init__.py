"""Model-free offline MARL baselines (PAPER.md section 5), one file per family."""
