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
# # Four-agent Ant: strategy fine-tuning offline
#
# The Ant split in four (PAPER.md section 6): each leg (hip and ankle) is one agent. Under full
# observability (*fo*) every agent sees the whole 27-d state; under partial observability (*po*)
# each agent sees only its own leg's joints, and one agent, the torso agent (agent 1, its leg drawn
# in yellow), also sees the torso and must steer the whole robot. Walking is not a choice between
# conventions: the legs must *fine-tune* their behaviour to one another (a gait), beyond what the
# dataset shows. Offline learners that fit each leg to the data alone cannot adapt to partners that
# changed; MOMA-PPO lets the legs adapt to each other inside a learned world model.
#
# This notebook builds (or loads) the dataset (Table 2), fits the world model, trains IQL, MAIQL,
# MAIQL-ft, IBC, ITD3+BC, ICQL, IOMAR and MOMA-PPO under fo and po (Table 4b), MOMA-PPO in the
# ground-truth simulator (Table 5), and shows how the trained teams' legs coordinate: gait diagrams
# from MuJoCo's foot contacts, and what a team loses when one leg is replaced by the dataset's
# behaviour-cloned policy of that leg.
#
# `papermill notebooks/ant.ipynb out.ipynb -p dataset medium` (the preset defaults to `gpu` where
# CUDA is available, else `cpu`); `-p preset ci` runs it in minutes; `-p dataset
# ~/.d4rl/datasets/ant_medium-v2.hdf5` uses your own D4RL (or Minari) file. Outputs go to
# `outputs/ant/<preset>/`: `results.json` (every finished run of this preset, merged by run) and
# `tables/` (CSV, markdown, LaTeX).

# %% tags=["parameters"]
dataset = "medium"  # random, medium, full-replay, expert (generated here), or a D4RL .hdf5 / Minari folder path
observability = ["fo", "po"]  # observation settings (one name or a list)
methods = ["iql", "maiql", "maiql_ft", "ibc", "itd3bc", "icql", "iomar", "moma_ppo"]
seeds = None  # None: the preset's (ci 1; cpu and gpu 3, as the paper)
preset = None  # None: gpu where CUDA is available, else cpu; ci (minutes), cpu, gpu, or your own
po_memory = None  # attention memory under partial observability; None: the preset's
table5 = None  # MOMA-PPO in the ground-truth simulator as well (Table 5); None: the preset's
backend = "local"  # serial, local (process pool) or ray
ray_address = None  # an existing Ray cluster, or None for a local one
workers_per_gpu = None  # jobs at once on each GPU; None: one worker per core (README "Speed on a GPU")
live = None  # None: live plots and widgets in JupyterLab, static figures under papermill/nbconvert
eval_episodes = None  # greedy evaluation episodes per seed; None: the preset's (the paper: 100)

# %% tags=["nbval-ignore-output"]
from momawb import notebook

nb = notebook.setup("ant", globals())  # checks the parameters above, prints preset and device

import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from IPython.display import display  # noqa: E402

from momawb import domains, gait, generate, plots, render, results, sweep, tables  # noqa: E402
from momawb.calibration import calibration  # noqa: E402
from momawb.domains import ant  # noqa: E402
from momawb.runs import read_metrics  # noqa: E402
from momawb.train import DISPLAY  # noqa: E402

observations = list(observability)
name = nb.params.dataset_name
gen_overrides = {k: v for k, v in nb.sections.get("ant_generator", {}).items() if k not in ("seed", "name")}
grid = dict(notebook="ant", preset=preset, overrides=nb.overrides, eval_episodes=eval_episodes,
            on_diverge="record")  # a training that diverges is a recorded result, not the end of the notebook
jobs = sweep.observation_grid(methods, dataset, range(seeds), "ant", observations, po_memory=po_memory, **grid)
sim_jobs = []
if table5 and "moma_ppo" in methods:  # Table 5: the same MOMA-PPO, rolled out in the real simulator
    over = {k: dict(v) for k, v in nb.overrides.items()}
    over.setdefault("moma_ppo", {})["mode"] = "simulator"
    sim_jobs = sweep.observation_grid(["moma_ppo"], dataset, range(seeds), "ant", observations, po_memory=po_memory,
                                      variant="simulator", **{**grid, "overrides": over})
nb.estimate_wall_time(jobs + sim_jobs)

# %% [markdown]
# ## The four agents and what they see
#
# Each agent's actuators are read from the MuJoCo model (`actuator_trnid`): agent *i* drives, and
# observes, leg *i*. (The paper's released code split the action vector in agent order while
# Gymnasium's actuators start with leg 4: its agent *i* observed leg *i* but drove leg *i - 1*.)

# %% tags=["nbval-check-output"]
model = ant._model()
acts = ant.actuators_of_agents(model)
legs = [[model.joint(int(model.actuator_trnid[a, 0])).name for a in row] for row in acts]
rows_obs = [[f"agent {i + 1}", " + ".join(legs[i]), " ".join(map(str, acts[i]))]
            + [", ".join(ant.STATE_LABELS[j] for j in ant.observation_index(s)[i] if j >= 0) if s == "po" else
               "all 27 state coordinates" for s in ("fo", "po")] for i in range(4)]
display(tables.Table(["agent", "drives", "actuators", "sees under fo", "sees under po"], rows_obs,
                     "Agents, their legs and their observations"))

# %% [markdown]
# ## The dataset (Table 2)
#
# Generated datasets come from one Stable-Baselines3 PPO run on Gymnasium's Ant-v5
# (`momawb.generate.ant`): *random* is its initial policy, *medium* the first snapshot that
# closest to a third of the expert's return among those walking forward, *full-replay* every transition of
# the run (whole episodes, evenly spread when the run is larger than the dataset), *expert* its
# final policy. Scores are normalised with the dataset's own measured random and expert returns
# (D4RL's references are for D4RL's gym Ant; both are shown).

# %% tags=["nbval-ignore-output"]
data = generate.named_dataset("ant", dataset, progress=True, **gen_overrides)
domain_fo = domains.make("ant", observation="fo").for_dataset(data)
desc = data.describe(domain_fo)
scores = data.normalized_scores(domain_fo)
d4rl_scores = domains.make("ant").normalize(data.episode_returns())
paper2 = tables.TABLE2_ANT.get(name)
table2 = tables.Table(
    ["normalised return", "ours (measured references)", "ours (% of D4RL's references)", f"Table 2 ({name})"],
    [[k, f"{100 * f(scores):.1f} %", f"{100 * f(d4rl_scores):.1f} %",
      "-" if paper2 is None else f"{paper2[k]:.1f} %"]
     for k, f in (("min", np.min), ("mean", np.mean), ("median", np.median), ("max", np.max))],
    f"Table 2: {name} ({desc['episodes']} episodes, {desc['transitions']} transitions; references random "
    f"{domain_fo.reference_returns[0]:.0f}, expert {domain_fo.reference_returns[1]:.0f})")
print(f"from {data.source}")
display(table2)
nb.save_table(table2, "table2")
fig = go.Figure(go.Histogram(x=100 * scores, nbinsx=40, marker_color=plots.PALETTE[0]))
fig.update_layout(title=f"episode returns of {name} (normalised, %)", xaxis_title="normalised return (%)",
                  yaxis_title="episodes", height=320)
fig.show()

# %% [markdown]
# ## The world model
#
# One ensemble per dataset, shared by fo and po and by every seed (it sees global states). Its
# validation error during training, the elites it keeps, and whether its disagreement eps_g
# rises with its real error along 10-step rollouts replayed in the ground-truth simulator
# (restarted from the dataset's qpos/qvel). Predicted states outside the dataset's bounding box
# are clipped to it (PAPER.md section 2): the share of coordinates that needed it is below.

# %% tags=["nbval-ignore-output"]
moma_jobs = [j for j in jobs if j.method == "moma_ppo"]
wm = sweep.fit_world_model_job(moma_jobs[0]) if moma_jobs else None
if wm is not None:
    rows_wm = [r for r in read_metrics(wm.meta["run"]) if "eval/val_nll" in r]
    fig = go.Figure(go.Scatter(x=[r["step"] for r in rows_wm], y=[r["eval/val_nll"] for r in rows_wm],
                               mode="lines+markers"))
    fig.update_layout(title="world model: validation NLL (mean over members)", xaxis_title="gradient step",
                      yaxis_title="validation NLL", height=300)
    fig.show()
    print(f"elites (best first): {wm.elites}; validation scores " +
          ", ".join(f"m{m} {s:.4f}" for m, s in enumerate(wm.val_scores)))
    cal = calibration(wm, data, domain_fo, k=10)
    plots.calibration_figure(cal).show()
    rho = cal["spearman"]["rollout"]
    print(f"Spearman(eps_g, real error): one step {cal['spearman']['one_step']:.2f}; rollout step 1 {rho[0]:.2f}, "
          f"step 10 {rho[-1]:.2f}; eps_g median {np.median(cal['one_step']['eps_g']):.3g}, 99th percentile "
          f"{np.percentile(cal['one_step']['eps_g'], 99):.3g} (l_eps = 2 in the paper's code)")
    print(f"predicted coordinates clipped to the bounding box along the rollouts: {cal['clip_frac']:.2%}")

# %% [markdown]
# ## Training (Table 4b)
#
# One job of `momawb.sweep` per (method, setting, seed); IQL acts on the global state, so it runs
# only under fo. Finished jobs are skipped and unfinished ones resume from their checkpoints when
# this cell runs again. A training that diverges (non-finite values) is printed and left out of
# the tables below, not hidden.

# %% tags=["nbval-ignore-output"]
curves = plots.LiveCurves(methods, observations, DISPLAY, live=nb.live)
curves.show()
rows = nb.run(jobs + sim_jobs, on_result=curves.add)  # momawb.sweep.sweep; merges results.json
curves.close()
for (m, task), bad in results.diverged(rows).items():
    print(f"{DISPLAY.get(m, m)} / {task}: training diverged (non-finite values) for seed(s) {bad}; left out")
main_rows = [r for r in results.scored(rows) if not r.get("variant")]
sim_rows = [r for r in results.scored(rows) if r.get("variant") == "simulator"]

# %% tags=["nbval-ignore-output"]
plots.learning_curves(main_rows, methods, display=DISPLAY, smoothing=0.8, tasks=observations).show()

# %% [markdown]
# ## Table 4b: ours beside the paper's
#
# Normalised score over seeds: mean ± s.e. and the interquartile mean with a 95 % bootstrap
# interval (stratified over settings in the last row; Agarwal et al. 2021). The paper gives
# means only, with D4RL's data and references; ours are this dataset's.

# %% tags=["nbval-ignore-output"]
table4b = tables.ResultTable.from_rows([{**r, "task": f"{r['task']}-{name}"} for r in main_rows], tables.TABLE4B,
                                       f"Table 4b ({name})", DISPLAY, task_label="task", methods=methods)
display(table4b)
print(table4b.agreement())
nb.save_table(table4b, "table4b")

# %% [markdown]
# ## Table 5: the learned model against the ground-truth simulator
#
# MOMA-PPO trained exactly the same way, but with its k-step rollouts stepped in the real
# simulator restarted from the dataset states (`mode="simulator"`): how much of the gap to a
# perfect model remains.

# %% tags=["nbval-ignore-output"]
if sim_rows:
    t5_rows = [{**r, "task": f"{r['task']}-{name}", "method": "simulator" if r.get("variant") else "model"}
               for r in main_rows + sim_rows if r["method"] == "moma_ppo"]
    table5_ = tables.ResultTable.from_rows(t5_rows, tables.TABLE5, f"Table 5 ({name})",
                                           {"model": "MOMA-PPO, learned model", "simulator": "MOMA-PPO, simulator"},
                                           methods=["model", "simulator"])
    display(table5_)
    nb.save_table(table5_, "table5")

# %% [markdown]
# ## How do the legs coordinate? Gait diagrams
#
# For one greedy episode of each trained team (its lowest seed that did not diverge), which feet
# touch the ground (MuJoCo contacts of each foot with the floor; bars) and the torso's forward
# speed; beside them, episodes of the dataset's expert and medium policies (generated datasets).
# The table gives, over a few episodes, each leg's duty factor (share of steps on the ground),
# touchdowns per second, and how often the diagonal and the lateral pairs of legs are in the same
# state (a trot: diagonal pairs together, lateral pairs apart).

# %% tags=["nbval-ignore-output"]
job_of = {id(r): j for r, j in zip(rows, jobs + sim_jobs)}
first = {(r["method"], r["task"]): r for r in sorted(main_rows, key=lambda r: -r["seed"])}
shown, stats = {}, {}
for src in ("expert", "medium"):
    if dataset in notebook.ANT_DATASETS:
        ref = generate.named_dataset("ant", src, **gen_overrides)
        g = gait.dataset_gaits(ref, episodes=min(3, eval_episodes), min_length=50)
        shown[f"dataset: {src}"], stats[f"dataset: {src}"] = g["gaits"][0], g["stats"]
for (m, task), r in sorted(first.items()):
    dom = domains.make("ant", observation=task).for_dataset(data)
    g = gait.team_gaits(sweep.trained_team(job_of[id(r)]), dom, episodes=min(3, eval_episodes))
    key = f"{DISPLAY[m]} / {task}"
    shown[key], stats[key] = g["gaits"][0], g["stats"]
gait.gait_figure(shown, steps=120).show()
header, *body = gait.gait_table(stats)
display(tables.Table(header, body, f"Gaits over {min(3, eval_episodes)} episode(s)"))

# %% [markdown]
# ## The cost of a mis-adapted partner
#
# Each trained team with one leg replaced by that leg of the dataset's behaviour-cloned policy
# (IBC trained on the same data and setting): a partner that imitates the data and never adapted
# to this team. A team whose legs rely on each other's adaptations loses more.

# %% tags=["nbval-ignore-output"]
if "ibc" in methods:
    swap_rows = []
    for (m, task), r in sorted(first.items()):
        if m == "ibc" or ("ibc", task) not in first:
            continue
        dom = domains.make("ant", observation=task).for_dataset(data)
        team, bc = sweep.trained_team(job_of[id(r)]), sweep.trained_team(job_of[id(first[("ibc", task)])])
        cost = gait.swap_costs(team, bc, dom, episodes=min(5, eval_episodes))
        swap_rows.append([f"{DISPLAY[m]} / {task}", f"{cost['team']:.2f}"] + [f"{s:.2f}" for s in cost["swapped"]])
    display(tables.Table(["team", "alone"] + [f"leg {i + 1} from IBC" for i in range(4)], swap_rows,
                         "Normalised score with one leg replaced by the behaviour-cloned policy "
                         "(each team's lowest seed that did not diverge)"))

# %% [markdown]
# Checks on the run itself: every (setting, method) ran, and each run has a finite score or is
# recorded as diverged.

# %% tags=["nbval-check-output"]
expected = {(o, m) for o in observations for m in methods if m not in sweep.CENTRALIZED or o == "fo"}
got = {(r["task"], r["method"]) for r in rows if not r.get("variant")}
assert got == expected, f"missing runs: {sorted(expected - got)}"
assert all(np.isfinite(r["score"]) or r.get("diverged") for r in rows)
print(f"{len(expected)} (setting, method) cells, {len(rows)} runs ({len(sim_jobs)} in the simulator), "
      f"{sum(len(s) for s in results.diverged(rows).values())} diverged, the rest scored")

# %% [markdown]
# ## Watch a trained team
#
# Pick a team (method, setting, seed) and one of its greedy evaluation episodes: the animation,
# six frames, its speed and duty factors. Under po the torso agent's leg is yellow.

# %% tags=["nbval-ignore-output"]
render.team_viewer(main_rows, lambda r: sweep.trained_team(job_of[id(r)]),
                   lambda r: domains.make("ant", observation=r["task"]).for_dataset(data), DISPLAY, episodes=3,
                   live=nb.live, view=render.AntView())
