# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
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
# Run it headless with `papermill notebooks/coordination_game.ipynb out.ipynb -p preset cpu`
# or `-f params/coordination_game/ci.yaml`.

# %% tags=["parameters"]
preset = "ci"  # ci (minutes, CI), cpu (this laptop), gpu (paper scale)
datasets = ["favorable", "neutral", "unfavorable"]
methods = ["iql", "maiql", "ibc", "moma_ppo"]
seeds = 10  # the paper uses 10 seeds for the game
backend = "local"  # serial, local (process pool) or ray
ray_address = None  # an existing Ray cluster, or None for a local one
live = True  # live learning curves (plotly FigureWidget)
eval_episodes = 100

# %% tags=["nbval-ignore-output"]
import numpy as np
from IPython.display import HTML, display

import momawb
from momawb import config as cfg
from momawb import domains, generate, plots, sweep, tables
from momawb.domains.game import team_reward
from momawb.runs import outputs_root
from momawb.train import DISPLAY

params, preset_file = cfg.read_preset("coordination_game", preset)
overrides = {k: v for k, v in params.items() if k in cfg.SECTIONS}
out_dir = outputs_root() / "coordination_game" / preset
out_dir.mkdir(parents=True, exist_ok=True)
domain = domains.make("game")
print(f"momawb {momawb.__version__}, preset {preset!r} from {preset_file.name}; outputs in {out_dir}")

# %% [markdown]
# ## The payoff matrix

# %%
display(HTML(plots.payoff_html(domain.info["actions"], lambda a: float(team_reward(np.array(a))))))

# %% [markdown]
# ## The datasets (Table 1)
#
# Each agent plays *right* with its own probability, independently of the other. The dataset
# score is the fraction of coordinated rounds; for independent agents it is
# P(both right) + P(both left). Every seed trains on its own freshly collected dataset
# (dataset seed = run seed), so the spread over seeds below includes the data-collection
# noise: which convention a finite random dataset happens to favour.

# %% tags=["nbval-check-output"]
gen_overrides = {k: v for k, v in overrides.get("generator", {}).items() if k != "seed"}
data = {name: [generate.game_dataset(generate.game_dataset_config(name, seed=s, **gen_overrides))
               for s in range(seeds)] for name in datasets}
table1 = [["dataset", "P(a1 = right)", "P(a2 = right)", f"score (ours, {seeds} datasets)", "score (paper)"]]
for name, dss in data.items():
    p1, p2, paper = tables.TABLE1[name]
    mean, se = tables.mean_se([ds.normalized_scores(domain).mean() for ds in dss])
    table1.append([name, f"{p1:.2f}", f"{p2:.2f}", f"{mean:.3f} ± {se:.3f}", f"{paper:.3f}"])
print(tables.to_markdown(table1))

# %% [markdown]
# Try other probabilities: the histogram shows the joint actions a dataset of that kind holds.

# %% tags=["nbval-ignore-output"]
def sample(p_right):
    ds = generate.generate_game(generate.GameDatasetConfig(p_right=p_right, n_episodes=200, name="explore"))
    codes = (ds.actions[:, 0] * 2 + ds.actions[:, 1]).astype(int)
    return np.bincount(codes, minlength=4), float(ds.normalized_scores(domain).mean()), generate.expected_game_score(p_right)


plots.dataset_explorer(sample, n_agents=2, initial=(0.25, 0.75))

# %% [markdown]
# ## Training (Table 3)
#
# Every (method, dataset, seed) is one job of `momawb.sweep`; finished jobs are skipped and
# unfinished ones resume from their checkpoints when this cell runs again. MOMA-PPO first fits
# one world model per dataset. The plot grows as runs finish.

# %% tags=["nbval-ignore-output"]
curves = plots.LiveCurves("learning curves (one line per seed)", live=live)
if live:
    display(curves.fig)


def on_result(row):
    if row["curve"]:
        xs, ys = zip(*row["curve"])
        curves.add(f"{DISPLAY[row['method']]} / {row['dataset']}", xs, ys, label=f"seed {row['seed']}")


jobs = sweep.grid(methods, datasets, range(seeds), domain="game", notebook="coordination_game",
                  preset=preset, eval_episodes=eval_episodes, resample_data=True)
rows = sweep.sweep(jobs, backend=backend, address=ray_address, on_result=on_result)
results_path = sweep.write_results(out_dir / "results.json", rows, notebook="coordination_game", preset=preset)
print(f"{len(rows)} runs; results in {results_path}")

# %% tags=["nbval-ignore-output"]
plots.mean_curves(rows, display=DISPLAY).show()

# %% [markdown]
# ## Table 3: ours beside the paper's (normalised score, mean ± s.e. over seeds)

# %% tags=["nbval-check-output"]
measured = tables.aggregate([{**r, "task": r["dataset"]} for r in rows])
rows3 = tables.side_by_side(measured, tables.TABLE3, DISPLAY)
print(tables.to_markdown(rows3))
agree = {(t, m): tables.within(measured[t][m], tables.TABLE3[t][m], k=2.0, floor=0.05)
         for t in measured for m in measured[t] if m in tables.TABLE3.get(t, {})}
print(f"cells within two combined standard errors of the paper: {sum(agree.values())}/{len(agree)}")

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
