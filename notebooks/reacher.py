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
# # Two-agent Reacher: which way to bend the elbow?
#
# Reacher split in two (PAPER.md section 6): agent 1 drives the shoulder torque (theta_1), agent 2
# the elbow torque (theta_2). Every target can be reached with the elbow bent counter-clockwise
# (theta_2 >= 0) or clockwise (theta_2 <= 0): two equally good *conventions*. The expert-mix
# dataset holds, in equal parts, episodes of an expert team of each convention. An offline
# learner that copies each agent's marginal behaviour can end up with a shoulder of one
# convention and an elbow of the other: the torques fight and the arm misses the target.
#
# This notebook builds the dataset (Table 2), trains IQL, MAIQL, MATD3+BC, IBC, ITD3+BC, ICQL,
# IOMAR and MOMA-PPO under three observation settings (Table 4a), and measures, for every trained
# team, how often it bends each way or mis-coordinates.
#
# `papermill notebooks/reacher.ipynb out.ipynb -p preset cpu -p observation independent`, or
# `-f params/reacher/cpu.yaml` (the file's sections are used). The cell after the parameters
# checks every parameter and the preset first, then prints the device and the grid's estimated
# wall time. Outputs go to `outputs/reacher/<preset>/`: `results.json` (every finished run of
# this preset, merged by run) and `tables/` (CSV, markdown, LaTeX).

# %% tags=["parameters"]
preset = "ci"  # ci (minutes, CI), cpu (about 2 h on 2 cores), gpu (paper scale), or your own
observation = ["fo", "independent", "leader"]  # observation settings (one name or a list)
methods = ["iql", "maiql", "matd3bc", "ibc", "itd3bc", "icql", "iomar", "moma_ppo"]
seeds = None  # None: the preset's (ci 1; cpu and gpu 3, as the paper)
po_memory = None  # attention memory under partial observability; None: the preset's (gpu: on)
backend = "local"  # serial, local (process pool) or ray
ray_address = None  # an existing Ray cluster, or None for a local one
workers_per_gpu = None  # jobs at once on each GPU; None: one worker per core (README "Speed on a GPU")
live = None  # None: live plots and widgets in JupyterLab, static figures under papermill/nbconvert
eval_episodes = 100

# %% tags=["nbval-ignore-output"]
from momawb import notebook

nb = notebook.setup("reacher", globals())  # checks the parameters above, prints preset and device

import numpy as np  # noqa: E402
from IPython.display import HTML, Image, display  # noqa: E402

from momawb import conventions, convergence, domains, plots, render, sweep, tables  # noqa: E402
from momawb.generate import reacher as generate_reacher  # noqa: E402  (the expert-mix generator)
from momawb.domains import reacher  # noqa: E402
from momawb.train import DISPLAY  # noqa: E402

observations = list(observation)
jobs = sweep.observation_grid(methods, "expert-mix", range(seeds), "reacher", observations, po_memory=po_memory,
                              notebook="reacher", preset=preset, overrides=nb.overrides, eval_episodes=eval_episodes)
nb.estimate_wall_time(jobs, final_evaluations=2)  # the score, then the convention labels

# %% [markdown]
# ## The two agents and what they see
#
# The actuator of each agent is read from the MuJoCo model. Under partial observability nobody
# sees the fingertip-to-target vector; in *independent* each agent sees only its own joint and
# the target, in *leader* both see both joints but only agent 1 (the leader) sees the target.

# %% tags=["nbval-check-output"]
env = reacher.TwoAgentReacherEnv()
model = env.reacher.model
joints = [model.joint(int(model.actuator_trnid[a, 0])).name for a in reacher.actuator_of_agents(model)]
print("agent -> joint:", dict(zip(env.possible_agents, joints)))
env.close()
rows_obs = []
for name in ("fo", "independent", "leader"):
    idx = reacher.observation_index(name)
    rows_obs.append([name] + [", ".join(reacher.STATE_LABELS[j] for j in row if j >= 0) for row in idx])
display(tables.Table(["setting", "agent 1 (shoulder) sees", "agent 2 (elbow) sees"], rows_obs,
                     "What each agent observes"))

# %% [markdown]
# ## The expert-mix dataset (Table 2)
#
# Expert teams are online MAPPO (`moma_ppo.train`, `mode="online"`) on the all-observant task,
# seed after seed until a team of each convention exists; the mirror image of a team (reflected
# about the x axis: same returns, the other elbow side) stands in when the seeds give one
# convention only. The `ci` preset trains one short expert with a convention-shaping term
# (`generate_reacher.shaped_reacher_domain`) and uses its mirror image, so CI needs no 15-minute expert
# training. Built once, then loaded from `outputs/datasets/`.

# %% tags=["nbval-ignore-output"]
gen_overrides = {k: v for k, v in nb.sections.get("reacher_generator", {}).items() if k != "seed"}
data_config = generate_reacher.reacher_dataset_config("expert-mix", **gen_overrides)
dataset = generate_reacher.reacher_dataset(data_config, progress=True)
domain_fo = domains.make("reacher", observation="fo")
desc = dataset.describe(domain_fo)
table2 = tables.Table(["normalised score", "ours", "Table 2"],
                      [[k, f"{100 * desc['score_' + k]:.1f} %", f"{tables.TABLE2_REACHER[k]:.1f} %"]
                       for k in ("min", "mean", "median", "max")],
                      f"Table 2: the expert-mix dataset ({desc['episodes']} episodes, {desc['transitions']} transitions)")
print(f"from {dataset.source}")
display(table2)
nb.save_table(table2, "table2")
meas = dataset.meta["measured_reference_returns"]
print(f"reference returns: paper random {domain_fo.reference_returns[0]}, expert {domain_fo.reference_returns[1]}; "
      f"measured here: uniform-random torques {meas['random']:.2f}, zero torque {meas['zero_torque']:.2f}, "
      f"the two source teams {meas['expert']:.2f}")
labels = conventions.dataset_labels(dataset)
frac = {k: np.mean([lb["name"] == k for lb in labels]) for k in plots.CONVENTION_COLORS}
print("dataset episodes: " + ", ".join(f"{k} {v:.1%}" for k, v in frac.items()))

# %% [markdown]
# ### Coordinated and mis-coordinated, in frames
#
# The dataset's two source teams each reach the target their own way. A team made of the
# counter-clockwise team's shoulder and the clockwise team's elbow (`conventions.MixedTeam`)
# is what a decentralised learner risks: its agents fight over the elbow side.

# %% tags=["nbval-ignore-output"]
experts, _ = generate_reacher.reacher_experts(data_config, log=None)
mixed = conventions.MixedTeam(experts["ccw"][0], experts["cw"][0])
for title, team in (("counter-clockwise expert", experts["ccw"][0]), ("clockwise expert", experts["cw"][0]),
                    ("mixed: ccw shoulder + cw elbow", mixed)):
    ep = render.episode_of(team, domain_fo, episodes=10)
    k = int(np.argmax([lb["fight_fraction"] for lb in ep["labels"]])) if team is mixed else 0
    lab = ep["labels"][k]
    frames = render.reacher_frames(ep["states"][k], every=8, size=120)
    display(HTML(f"<b>{title}</b>: episode {k}, {lab['name']}, return {ep['returns'][k]:.2f}, "
                 f"torques fighting on {lab['fight_fraction']:.0%} of steps"))
    display(Image(render.strip_png(frames, [f"t={8 * i}" for i in range(len(frames))])))

# %% [markdown]
# ## Training (Table 4a)
#
# One job of `momawb.sweep` per (method, setting, seed); IQL acts on the global state, so it runs
# only all-observant. MOMA-PPO first fits one world model on the dataset, shared by the three
# settings (the model sees global states, not observations). Finished jobs are skipped and
# unfinished ones resume from their checkpoints when this cell runs again.

# %% tags=["nbval-ignore-output"]
curves = plots.LiveCurves(methods, observations, DISPLAY, live=nb.live)
curves.show()
rows = nb.run(jobs, on_result=curves.add)  # momawb.sweep.sweep; merges results.json
curves.close()

# %% [markdown]
# Learning curves: one panel per method on its own step axis (MOMA-PPO counts learning
# iterations, the baselines gradient steps), one line style per observation setting; smoothed
# as in the paper (0.8; `smoothing=0` shows the raw evaluations).

# %% tags=["nbval-ignore-output"]
plots.learning_curves(rows, methods, display=DISPLAY, smoothing=0.8, tasks=observations).show()

# %% [markdown]
# Was any method stopped while still climbing? A least-squares slope through every seed's
# evaluations in the last third of its steps, each seed at its own level (`momawb.convergence`): a marked cell rose
# significantly there, so its score in Table 4a is where the preset stopped it, not where the
# method ends up. At `ci` the curves are too short to tell.

# %% tags=["nbval-ignore-output"]
climbing = convergence.climbing_table(rows, methods, observations, DISPLAY, title="The end of each learning curve")
display(climbing)
print("stopped while still climbing: " + (", ".join(convergence.still_climbing(climbing)) or "none"))

# %% [markdown]
# ## Does the world model know where it is wrong?
#
# MOMA-PPO stops a synthetic rollout when the ensemble's disagreement eps_g reaches `l_eps` and
# penalises rewards by it, so eps_g should rise with the model's real error. Here it is beside
# that error on held-out transitions and along 10-step rollouts replayed in the real simulator
# (restarted from the stored qpos/qvel; `momawb.calibration`).

# %% tags=["nbval-ignore-output"]
from momawb.calibration import calibration

moma_jobs = [j for j in jobs if j.method == "moma_ppo"]
if moma_jobs:
    cal = calibration(sweep.fit_world_model_job(moma_jobs[0]), dataset, domains.make("reacher"), k=10)
    plots.calibration_figure(cal).show()
    rho = cal["spearman"]["rollout"]
    print(f"Spearman(eps_g, error): one step {cal['spearman']['one_step']:.2f}; "
          f"rollout step 1 {rho[0]:.2f}, step 10 {rho[-1]:.2f}")

# %% [markdown]
# ## Table 4a: ours beside the paper's
#
# Normalised score over seeds: mean ± s.e. and the interquartile mean with a 95 % bootstrap
# interval (stratified over settings in the last row; Agarwal et al. 2021). The paper gives
# means only. Scores are 100 greedy episodes per seed, normalised with the paper's reference
# returns (expert -4.237, random -11.145).

# %% tags=["nbval-ignore-output"]
table4a = tables.ResultTable.from_rows(rows, tables.TABLE4A, "Table 4a", DISPLAY, task_label="setting",
                                       methods=methods)
display(table4a)
print(table4a.agreement())
nb.save_table(table4a, "table4a")

# %% [markdown]
# ## Conventions: which way does each trained team bend, and how often do its agents fight?
#
# For every team, its greedy evaluation episodes are labelled (`momawb.conventions`): the sign
# of the elbow angle over the second half of the episode (*ccw*, *cw*, or *straight* when the
# arm ends almost straight), or *miscoordinated* when the elbow flips side in that window, or
# the target is missed while the two torques push the fingertip in opposite directions on at
# least half of the steps.

# %% tags=["nbval-ignore-output"]
plots.convention_fractions(rows, DISPLAY, order=methods).show()

# %% [markdown]
# What the runs above show, computed from them (not asserted): MOMA-PPO against the
# independent learners and MAIQL under partial observability.

# %% tags=["nbval-ignore-output"]
def mean_of(task, method, key=None):
    vals = [r["conventions"][key] if key else r["score"] for r in rows if r["task"] == task and r["method"] == method]
    return float(np.mean(vals)) if vals else float("nan")


for task in [o for o in ("independent", "leader") if o in observations]:
    if "moma_ppo" not in methods:
        break
    moma = mean_of(task, "moma_ppo")
    for m in [m for m in ("ibc", "maiql") if m in methods]:
        print(f"{task:12s} MOMA-PPO {moma:5.2f} vs {DISPLAY[m]:6s} {mean_of(task, m):5.2f}: "
              f"{'at least as good' if moma >= mean_of(task, m) else 'worse'}")
    mis = {m: mean_of(task, m, "miscoordinated") for m in methods if m in ("moma_ppo", "ibc", "itd3bc", "icql", "iomar")}
    print(f"{task:12s} mis-coordinated episodes: " + ", ".join(f"{DISPLAY[m]} {v:.0%}" for m, v in mis.items()))

# %% [markdown]
# Checks on the run itself: every (setting, method) has a score and its episode fractions add
# up to one.

# %% tags=["nbval-check-output"]
expected = {(o, m) for o in observations for m in methods if m not in sweep.CENTRALIZED or o == "fo"}
got = {(r["task"], r["method"]) for r in rows}
assert got == expected, f"missing runs: {sorted(expected - got)}"
assert all(np.isfinite(r["score"]) for r in rows)
assert all(abs(sum(r["conventions"][k] for k in plots.CONVENTION_COLORS) - 1) < 1e-9 for r in rows)
print(f"{len(expected)} (setting, method) cells, {len(rows)} runs, all scored and labelled")

# %% [markdown]
# ## Watch a trained team
#
# Pick a team (method, setting, seed) and one of its greedy evaluation episodes: the animation,
# six frames, and the episode's label.

# %% tags=["nbval-ignore-output"]
job_of = {id(r): j for r, j in zip(rows, jobs)}
render.team_viewer(rows, lambda r: sweep.trained_team(job_of[id(r)]),
                   lambda r: domains.make("reacher", observation=r["task"]), DISPLAY, episodes=10, live=nb.live)
