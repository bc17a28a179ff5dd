# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The Iterated Coordination Game: strategy agreement offline
#
# Two agents play *left* or *right* every round and get a team reward of 1 when they pick the
# same action, else 0 (PAPER.md section 6). Two conventions are optimal — both left, both
# right — and nothing in an agent's observation says which one its partner follows. Offline,
# each agent only sees a dataset collected by independent random policies; if it copies or
# maximises against the *marginal* behaviour of its partner, the agents can each pick a
# different convention and never coordinate. This notebook builds the three datasets of
# Table 1, then trains IQL, MAIQL, IBC and MOMA-PPO on them (Table 3).
#
# Headless: `papermill notebooks/coordination_game.ipynb out.ipynb -p preset cpu`, or a file of
# parameters and sections, `-f params/coordination_game/ci.yaml` (its sections are used). The
# cell after the parameters checks every parameter and the preset first, then prints the
# device and the grid's estimated wall time. Outputs go to `outputs/coordination_game/<preset>/`:
# `results.json` (every finished run of this preset, merged by run) and `tables/` (CSV, markdown,
# LaTeX).

# %% tags=["parameters"]
preset = "ci"  # ci (minutes, CI), cpu (this laptop), gpu (paper scale), or your own params/ file
datasets = ["favorable", "neutral", "unfavorable"]
methods = ["iql", "maiql", "ibc", "moma_ppo"]
seeds = 10  # the paper uses 10 seeds for the game
backend = "local"  # serial, local (process pool) or ray
ray_address = None  # an existing Ray cluster, or None for a local one
workers_per_gpu = None  # jobs at once on each GPU; None: one worker per core (README "Speed on a GPU")
live = None  # None: live plots in JupyterLab, static figures under papermill/nbconvert
eval_episodes = 100

# %% tags=["nbval-ignore-output"]
from momawb import notebook

nb = notebook.setup("coordination_game", globals())  # checks the parameters above, prints preset and device

import numpy as np  # noqa: E402
from IPython.display import display  # noqa: E402

from momawb import domains, plots, sweep, tables  # noqa: E402
from momawb import generate  # noqa: E402  (the dataset generators)
from momawb.domains.game import team_reward  # noqa: E402
from momawb.train import DISPLAY  # noqa: E402

domain = domains.make("game")
jobs = sweep.grid(methods, datasets, range(seeds), domain="game", notebook="coordination_game", preset=preset,
                  overrides=nb.overrides, eval_episodes=eval_episodes, resample_data=True)
nb.estimate_wall_time(jobs)

# %% [markdown]
# ## The payoff matrix

# %%
display(tables.payoff_table(domain.info["actions"], lambda a: float(team_reward(np.array(a)))))

# %% [markdown]
# ## The datasets (Table 1)
#
# Each agent plays *right* with its own probability, independently of the other. The dataset
# score is the fraction of coordinated rounds; for independent agents it is
# P(both right) + P(both left). Every seed trains on its own freshly collected dataset
# (dataset seed = run seed), so the spread over seeds below includes the data-collection
# noise: which convention a finite random dataset happens to favour.

# %% tags=["nbval-check-output"]
gen_overrides = {k: v for k, v in nb.sections.get("generator", {}).items() if k != "seed"}
data = {name: [generate.game_dataset(generate.game_dataset_config(name, seed=s, **gen_overrides))
               for s in range(seeds)] for name in datasets}
rows1 = []
for name, dss in data.items():
    p1, p2, paper = tables.TABLE1[name]
    mean, se = tables.mean_se([ds.normalized_scores(domain).mean() for ds in dss])
    rows1.append([name, f"{p1:.2f}", f"{p2:.2f}", f"{mean:.3f} ± {se:.3f}", f"{paper:.3f}"])
table1 = tables.Table(["dataset", "P(a1 = right)", "P(a2 = right)", f"score (ours, {seeds} datasets)",
                       "score (paper)"], rows1, "Table 1: the game datasets (mean ± s.e. over the per-seed datasets)")
display(table1)
nb.save_table(table1, "table1")

# %% [markdown]
# Try other probabilities: the histogram shows the joint actions a dataset of that kind holds
# (sliders in JupyterLab; an executed file shows the starting point).

# %% tags=["nbval-ignore-output"]
def sample(p_right):
    ds = generate.generate_game(generate.GameDatasetConfig(p_right=p_right, n_episodes=200, name="explore"))
    codes = (ds.actions[:, 0] * 2 + ds.actions[:, 1]).astype(int)
    return np.bincount(codes, minlength=4), float(ds.normalized_scores(domain).mean()), generate.expected_game_score(p_right)


plots.dataset_explorer(sample, n_agents=2, initial=(0.25, 0.75), live=nb.live)

# %% [markdown]
# ## Training (Table 3)
#
# Every (method, dataset, seed) is one job of `momawb.sweep`; finished jobs are skipped and
# unfinished ones resume from their checkpoints when this cell runs again. MOMA-PPO first fits
# one world model per dataset. In JupyterLab the curves appear as runs finish.

# %% tags=["nbval-ignore-output"]
curves = plots.LiveCurves(methods, datasets, DISPLAY, live=nb.live, task_key="dataset")
curves.show()
rows = nb.run(jobs, on_result=curves.add)  # momawb.sweep.sweep; merges results.json
curves.close()

# %% [markdown]
# Learning curves: one panel per method on its own step axis (MOMA-PPO counts learning
# iterations, the baselines gradient steps), one line style per dataset; smoothed as in the
# paper (0.8; `smoothing=0` shows the raw evaluations).

# %% tags=["nbval-ignore-output"]
plots.learning_curves(rows, methods, task_key="dataset", display=DISPLAY, smoothing=0.8, tasks=datasets).show()

# %% [markdown]
# ## Table 3: ours beside the paper's
#
# Normalised score over seeds: mean ± s.e. as in the paper, and the interquartile mean with a
# 95 % bootstrap interval (stratified over datasets in the last row; Agarwal et al. 2021).

# %% tags=["nbval-check-output"]
table3 = tables.ResultTable.from_rows(rows, tables.TABLE3, "Table 3", DISPLAY, task_key="dataset",
                                      task_label="dataset", methods=methods)
display(table3)
print(table3.agreement())
nb.save_table(table3, "table3")

# %% [markdown]
# ## Which convention did each team pick?
#
# A team's greedy joint action: *left-left* or *right-right* is an agreement, anything else a
# failure to coordinate. Independent learners follow the marginal behaviour in the data, so on
# *unfavorable* agent 1 leans left and agent 2 leans right.

# %% tags=["nbval-ignore-output"]
names = domain.info["actions"]
plots.convention_figure(rows, lambda a: "-".join(names[i] for i in a), "greedy joint action per seed",
                        DISPLAY).show()
