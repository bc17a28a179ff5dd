"""Model-free offline MARL baselines (PAPER.md section 5), one file per family.

=========  ===========================  ============================================
method     function                     file
=========  ===========================  ============================================
IQL        ``train_iql``                `iql` (centralised training and execution)
MAIQL      ``train_maiql``              `iql` (QMIX-style Q and V, AWR)
MAIQL-ft   ``train_maiql_ft``           `iql` (+ ground-truth simulator fine-tuning)
IBC        ``train``                    `bc`
MATD3+BC   ``train_matd3bc``            `td3bc` (CTDE, mixed critic)
ITD3+BC    ``train_itd3bc``             `td3bc` (independent)
ICQL       ``train_icql``               `cql`
IOMAR      ``train_iomar``              `cql`
=========  ===========================  ============================================

Each has the signature ``fn(config, dataset, domain, run, *, progress=True, **extra) -> Team``
(see `momawb.train`). Shared pieces live in `common`.
"""
