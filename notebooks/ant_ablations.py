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
# # Four-agent Ant: why MOMA-PPO works (the paper's ablations)
#
# PAPER.md section 7 ablates MOMA-PPO on Ant full-replay, under full (*fo*) and partial (*po*)
# observability: the epistemic penalty against MOPO's aleatoric one (coefficient 1 and 5), each with
# and without adaptive rollouts; no reward-uncertainty penalty (`lambda_r = 0`); no general penalty
# (`lambda_g = 0`); no adaptive rollouts (`l_eps = inf`); no state clipping; and the rollout
# horizon k in 5, 10, 25, 50. Each variant here is MOMA-PPO as the Ant notebook trains it
# (`params/ant/<preset>.yaml`) with one line of overrides (`momawb.ablations.VARIANTS`), run as
# one sweep.
#
# Beside each score: what the variant changed inside its rollouts, measured during training (the
# share of rollouts the eps_g threshold cut, their length, the penalty's share of the reward, eps_g,
# the share of predicted coordinates the bounding box clipped); the no-clipping plot; and each of
# the paper's conclusions with the difference we measure and whether it is significant at the
# seeds run.
#
# `papermill notebooks/ant_ablations.ipynb out.ipynb` (preset `gpu` where CUDA is available, else
# `cpu`); `-p preset ci` runs in minutes. Outputs go to `outputs/ant_ablations/<preset>/`; the
# runs themselves (and the world model) are shared with the Ant notebook's.

# %% tags=["parameters"]
dataset = "full-replay"  # the paper's ablation dataset; random, medium, expert, or a D4RL .hdf5 / Minari folder path
observability = ["fo", "po"]  # observation settings (one name or a list)
methods = ["moma_ppo", "l_eps_inf", "aleatoric_1", "aleatoric_1_l_eps_inf", "aleatoric_5", "aleatoric_5_l_eps_inf",
           "lambda_r_0", "lambda_g_0", "no_clip", "k_5", "k_25", "k_50"]  # variants (moma_ppo: the reference)
seeds = None  # None: the preset's (ci 1; cpu and gpu 3, as the paper)
preset = None  # None: gpu where CUDA is available, else cpu; ci (minutes), cpu, gpu, or your own
po_memory = None  # attention memory under partial observability; None: the preset's
backend = "local"  # serial, local (process pool) or ray
ray_address = None  # an existing Ray cluster, or None for a local one
workers_per_gpu = None  # jobs at once on each GPU; None: one worker per core (README "Speed on a GPU")
live = None  # None: live plots and widgets in JupyterLab, static figures under papermill/nbconvert
eval_episodes = None  # greedy evaluation episodes per seed; None: the preset's
norm_rollouts = 256  # model rollouts of the no-clipping plot

# %% tags=["nbval-ignore-output"]
from momawb import notebook

nb = notebook.setup("ant_ablations", globals())  # checks the parameters above, prints preset and device

import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import torch  # noqa: E402
from IPython.display import display  # noqa: E402

from momawb import ablations, domains, generate, plots, sweep, tables  # noqa: E402
from momawb.ablations import LABELS, VARIANTS  # noqa: E402
from momawb.calibration import rollout_state_norms  # noqa: E402
from momawb.moma_ppo import MomaPPOConfig  # noqa: E402

observations = list(observability)
variants = list(dict.fromkeys(["moma_ppo", *methods]))  # the reference of every comparison runs too
name = nb.params.dataset_name
gen_overrides = {k: v for k, v in nb.sections.get("ant_generator", {}).items() if k not in ("seed", "name")}
jobs = ablations.ablation_jobs(variants, dataset, range(seeds), "ant", observations, overrides=nb.overrides,
                               po_memory=po_memory, notebook=nb.job_notebook, preset=preset,
                               eval_episodes=eval_episodes)
nb.estimate_wall_time(jobs)

# %% [markdown]
# ## The variants
#
# Each one changes MOMA-PPO's config (`moma_ppo`) or the world model's step (`world_model`) and
# nothing else. "Adaptive rollouts" end a rollout (a timeout, not a terminal) the first time
# eps_g >= l_eps; MOPO's aleatoric penalty is c times the largest norm of the elites' predicted
# standard deviations.

# %% tags=["nbval-check-output"]
display(tables.Table(["variant", "overrides of MOMA-PPO"], [
    [LABELS[v], "; ".join(f"{sec}.{k} = {val}" for sec, kv in VARIANTS[v].items() for k, val in kv.items())
     or "none (the reference)"] for v in variants], "Ablation variants"))

# %% [markdown]
# ## eps_g at our scale, against the threshold
#
# eps_g is the Frobenius norm of the elites' covariance of [s', r] (PAPER.md section 2): squared
# state units, so a threshold such as the released code's `l_eps = 2` means something only
# relative to the model and the data. Here: eps_g of one model step on dataset states and actions.

# %% tags=["nbval-ignore-output"]
data = generate.named_dataset("ant", dataset, progress=True, **gen_overrides)
ref_job = next(j for j in jobs if j.variant == "moma_ppo" and j.task == observations[0])
wm = sweep.fit_world_model_job(ref_job)
l_eps = float(nb.sections["moma_ppo"].get("l_eps", MomaPPOConfig().l_eps))
idx = np.random.default_rng(0).choice(len(data), min(20_000, len(data)), replace=False)
acts = domains.make("ant", observation=observations[0]).for_dataset(data).split_actions(data.actions[idx])
eps_g = wm.step(torch.as_tensor(data.observations[idx]), torch.as_tensor(acts),
                generator=torch.Generator(wm.device).manual_seed(0)).eps_g.cpu().numpy()
q = np.percentile(eps_g, [10, 50, 90, 99])
print(f"eps_g on {len(idx)} dataset transitions: 10th {q[0]:.3g}, median {q[1]:.3g}, 90th {q[2]:.3g}, "
      f"99th {q[3]:.3g}; share >= l_eps = {l_eps:g}: {(eps_g >= l_eps).mean():.1%} (one step, dataset actions)")
fig = go.Figure(go.Histogram(x=np.log10(np.maximum(eps_g, 1e-12)), nbinsx=60, marker_color=plots.PALETTE[0]))
fig.add_vline(x=np.log10(l_eps), line=dict(color=plots.PALETTE[1], dash="dash"), annotation_text=f"l_eps = {l_eps:g}")
fig.update_layout(title="eps_g of one model step on the dataset", xaxis_title="log10 eps_g", yaxis_title="transitions",
                  height=320)
fig.show()

# %% [markdown]
# ## Training
#
# One job per (variant, setting, seed); finished runs are skipped and unfinished ones resume
# from their checkpoints when this cell runs again. The reference runs are the Ant notebook's
# MOMA-PPO runs on this dataset when it has trained them.

# %% tags=["nbval-ignore-output"]
curves = plots.LiveCurves(variants, observations, LABELS, live=nb.live, units=ablations.STEP_UNITS)
curves.show()
rows = nb.run(jobs, on_result=lambda r: curves.add(ablations.as_methods([r])[0]))
curves.close()
for (v, task), bad in ablations.diverged(rows).items():   # a variant without a safeguard may diverge: a result
    print(f"{LABELS[v]} / {task}: training diverged (non-finite values) for seed(s) {bad}; left out of the scores")
by_variant = ablations.as_methods(ablations.scored(rows))
plots.learning_curves(by_variant, variants, display=LABELS, smoothing=0.8, tasks=observations,
                      units=ablations.STEP_UNITS).show()

# %% [markdown]
# ## Scores
#
# Normalised score over seeds: mean ± s.e. and the interquartile mean with a 95 % bootstrap
# interval (stratified over settings in the last row), as the other tables. The paper reports
# its ablations as curves and conclusions, not numbers. Runs that diverged are left out (the
# caption gives the seeds each cell holds; the cell above names them).

# %% tags=["nbval-ignore-output"]
scores = tables.ResultTable.from_rows(by_variant, {}, f"MOMA-PPO ablations ({name})", LABELS,
                                      task_label="setting", methods=variants)
display(scores)
nb.save_table(scores, "ablations")

# %% [markdown]
# ## The paper's conclusions at these seeds
#
# For each conclusion: variant − reference per setting with Welch's p-value, the difference
# averaged over settings with its stratified-bootstrap 95 % interval, and a verdict per setting
# (a difference counts when p < 0.05). "Cannot resolve" means the paper expects a difference
# and ours is not significant.

# %% tags=["nbval-ignore-output"]
conclusions = ablations.comparisons(rows)
display(conclusions)
nb.save_table(conclusions, "conclusions")

# %% [markdown]
# ## Inside the rollouts
#
# What each variant changed, measured over its training (`rollout/*` metrics, logged every
# `log_every` iterations, averaged over iterations and seeds).

# %% tags=["nbval-ignore-output"]
inside = ablations.rollout_table(rows, variants)
display(inside)
nb.save_table(inside, "rollouts")

# %% [markdown]
# ## Without the clip: do predicted states explode?
#
# The same 10-step model rollouts from dataset states, with the bounding-box clip and without it,
# acting with the dataset's own next actions (open loop) and with the greedy team the no-clipping
# variant trained (seed 0, first setting). Grey lines: the dataset's 99th percentile and largest
# state norm.

# %% tags=["nbval-ignore-output"]
norms = {"dataset actions": rollout_state_norms(wm, data, k=10, n_rollouts=norm_rollouts)}
team_job = next((j for j in jobs if j.variant == "no_clip" and j.seed == 0 and j.task == observations[0]), None)
if team_job is not None and observations[0] == "fo":
    norms["no-clipping team"] = rollout_state_norms(wm, data, k=10, n_rollouts=norm_rollouts,
                                                    team=sweep.trained_team(team_job))
plots.state_norm_figure(norms).show()
for label, out in norms.items():
    top = out["dataset"]["max"]
    print(f"{label}: median ||s_hat|| at step 10 {np.median(out['clipped'][:, -1]):.3g} clipped, "
          f"{np.median(out['unclipped'][:, -1]):.3g} unclipped; unclipped rollouts beyond the dataset's largest "
          f"state by step 10: {(out['unclipped'].max(1) > top).mean():.0%} (dataset max {top:.3g})")

# %% [markdown]
# Checks on the run itself: every (setting, variant) ran, and every run has a finite score or
# diverged (recorded, not hidden), and logged its rollouts.

# %% tags=["nbval-check-output"]
expected = {(o, v) for o in observations for v in variants}
got = {(r["task"], r["variant"]) for r in rows}
assert got == expected, f"missing runs: {sorted(expected - got)}"
assert all((np.isfinite(r["score"]) or r.get("diverged")) and r.get("rollouts") for r in rows)
print(f"{len(expected)} (setting, variant) cells, {len(rows)} runs, each scored or recorded as diverged, "
      "rollouts measured")
