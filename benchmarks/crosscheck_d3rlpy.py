"""momawb's single-agent offline RL cores against d3rlpy (a maintained reference), same data, same
number of gradient steps, same evaluation (issue 18; README "Baselines against a reference").

    .venv/bin/python benchmarks/crosscheck_d3rlpy.py [--preset cpu] [--seeds 3] [--algos td3bc iql cql bc]
                                                     [--settings joint independent] [--episodes 100]
                                                     [--venv outputs/venvs/d3rlpy] [--set KEY=VALUE ...]

The first run builds the reference venv (about 65 s, 1.2 GB) unless ``--venv`` names one. At
``--preset ci`` (200 steps) it is a smoke test of the pipeline: the scores are noise.

Settings, on the Reacher expert-mix dataset of the preset (`momawb.generate.reacher`):
* ``joint``: one agent sees the global state and acts on the joint action (`domains.joint.joint`):
  momawb's learner with one agent (ITD3+BC, centralised IQL, ICQL, IBC) is the plain algorithm;
* ``independent``: the fo setting's two independent learners (ITD3+BC, ICQL, IBC of Table 4a):
  the reference trains one single-agent learner per agent on (o^i, a^i, team reward), and the two
  policies act together. IQL has no independent momawb counterpart (MAIQL mixes its values).

d3rlpy 2.8.1 pins gymnasium 1.0.0 and the old gym, so it lives in its own virtual environment
(`benchmarks/reference_venv.py`, built once under outputs/venvs/d3rlpy, torch pinned as ours). The
two sides exchange only files: this script writes each dataset view as a D4RL-layout HDF5 file,
the reference trains on it (`benchmarks/d3rlpy_reference.py`) and saves its policy as TorchScript
(observation scaler included); momawb evaluates both sides' policies with `evaluation.evaluate`
on the same env seeds (100 greedy episodes per run, as Table 4a). Hyperparameters are the
preset's (steps, hidden widths) and the paper's (batch 256, lr 3e-4, gamma 0.99, tau 0.005);
momawb's runs are the notebook's own (cached under outputs/runs, shared with Table 4a);
``--set state_dependent_std=false`` overrides a field of momawb's config (a variant, to isolate a
difference; the reference side is unchanged). One
convention differs and is matched: momawb sums TD3+BC's BC term over action dims (the paper's
released code), d3rlpy and TD3+BC's authors average it, so d3rlpy gets alpha = 2.5 / A (A = the
agent's action dims: 1 per Reacher agent, 2 for the joint agent). Every other difference between
the two implementations is listed in `benchmarks/d3rlpy_reference.py`.

Prints, per algorithm and setting: mean +- s.e. over seeds of both sides, the difference, Welch's
t-test p (scipy) and each side's wall time (not comparable: momawb's run includes its periodic and
final evaluations, d3rlpy's is its fit alone); writes outputs/crosscheck/<preset>/results.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_venv import ensure_reference_venv, run_reference  # noqa: E402

from momawb.jobs import Job, job_setup  # noqa: E402
from momawb.domains.joint import joint  # noqa: E402
from momawb.evaluation import evaluate, mean_se  # noqa: E402
from momawb.runs import outputs_root  # noqa: E402
from momawb.train import method_config, train  # noqa: E402

#: reference algorithm -> momawb method (joint setting, independent setting; None = no counterpart)
METHOD = {"td3bc": ("itd3bc", "itd3bc"), "iql": ("iql", None), "cql": ("icql", "icql"), "bc": ("ibc", "ibc")}
EVAL_SEED = 10_101          # both sides' final evaluation: env seeds EVAL_SEED + seed + e (Table 4a's)


class ScriptedTeam:
    """A team of TorchScript policies, one per agent: (B, N, O) observations -> (B, N, A)."""

    memory_length = 0

    def __init__(self, policies: list):
        self.policies = policies

    @torch.no_grad()
    def act(self, obs: torch.Tensor, history=None, greedy: bool = True) -> torch.Tensor:
        return torch.stack([p(obs[:, i].float()) for i, p in enumerate(self.policies)], 1).clamp(-1, 1)


def write_d4rl(path: Path, observations, actions, next_observations, ds) -> Path:
    """A D4RL-layout HDF5 file of one view of ``ds`` (written once; the reference reads it)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with h5py.File(tmp, "w") as f:
            for k, v in (("observations", observations), ("actions", actions), ("next_observations", next_observations),
                         ("rewards", ds.rewards), ("terminals", ds.terminals), ("timeouts", ds.timeouts)):
                f.create_dataset(k, data=np.asarray(v, np.float32 if k not in ("terminals", "timeouts") else bool))
        tmp.replace(path)
    return path


def reference_run(python, data: Path, algo: str, config, seed: int, folder: Path, act_dim: int) -> dict:
    """d3rlpy's run on ``data`` with ``config``'s sizes, or its earlier result when one with the same
    arguments is in ``folder`` (args.json records them).

    TD3+BC: momawb sums the BC term over the ``act_dim`` action dims (as the paper's released
    code), TD3+BC's and d3rlpy's code average it, so the same loss is d3rlpy's alpha = bc_alpha / act_dim
    (identical for Reacher's one-torque agents; half of 2.5 for the joint agent)."""
    args = dict(steps=config.steps, hidden=tuple(config.hidden), batch_size=config.batch_size, lr=config.lr,
                gamma=config.gamma, tau=config.tau, obs_norm=getattr(config, "obs_norm", None))
    if algo == "td3bc" and config.bc_alpha / act_dim != 2.5:            # 2.5: the script's default
        args["extra_args"] = ["--td3bc-alpha", repr(config.bc_alpha / act_dim)]
    done = folder / "args.json"
    earlier = json.loads(done.read_text()) if done.exists() else {}
    if earlier.get("args") == json.loads(json.dumps(args)):
        return earlier["result"]
    res = run_reference(python, data, algo, seed=seed, threads=1, out_dir=folder, **args)
    folder.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps({"args": args, "result": {k: (str(v) if isinstance(v, Path) else v)
                                                          for k, v in res.items()}}))
    return res


def views(ds, fo, setting: str, folder: Path) -> list[Path]:
    """The dataset files the reference trains on: one (joint) or one per agent (independent)."""
    if setting == "joint":
        return [write_d4rl(folder / "joint.hdf5", ds.observations, ds.actions, ds.next_observations, ds)]
    obs, nxt, act = fo.observe(ds.observations), fo.observe(ds.next_observations), fo.split_actions(ds.actions)
    return [write_d4rl(folder / f"agent_{i}.hdf5", obs[:, i], act[:, i], nxt[:, i], ds) for i in range(fo.n_agents)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--algos", nargs="+", default=list(METHOD), choices=list(METHOD))
    ap.add_argument("--settings", nargs="+", default=["joint", "independent"], choices=["joint", "independent"])
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--venv", default=None, help="the reference venv (default outputs/venvs/d3rlpy)")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="override fields of momawb's configs (YAML values), e.g. state_dependent_std=false")
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    torch.set_num_threads(1)       # both sides on one thread each: the same footing, and no oversubscription

    job = Job("itd3bc", "expert-mix", domain="reacher", domain_kwargs=(("observation", "fo"),),
              notebook="reacher", preset=args.preset)
    fo, ds = job_setup(job)           # the notebook's dataset at this preset (generated once, cached)
    out = outputs_root() / "crosscheck" / args.preset
    python = ensure_reference_venv(args.venv or outputs_root() / "venvs" / "d3rlpy")
    results = []
    for setting in args.settings:
        domain = joint(fo) if setting == "joint" else fo
        files = views(ds, fo, setting, out / "data")
        for algo in args.algos:
            method = METHOD[algo][0 if setting == "joint" else 1]
            if method is None:
                continue
            config = method_config(method, "reacher", args.preset, overrides)
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                ours = train(method, ds, domain, config, seed=seed, eval_episodes=args.episodes, eval_seed=EVAL_SEED,
                             progress=False)
                policies, ref_wall = [], 0.0
                for i, data in enumerate(files):
                    folder = out / "reference" / setting / algo / f"seed{seed}" / f"agent_{i}"
                    ref = reference_run(python, data, algo, config, seed, folder, domain.act_dim)
                    policies.append(torch.jit.load(str(ref["policy"])).eval())
                    ref_wall += ref["wall_s"]
                ev = evaluate(ScriptedTeam(policies), domain, episodes=args.episodes, seed=EVAL_SEED + seed, device="cpu")
                row = {"algo": algo, "setting": setting, "method": method, "seed": seed, "steps": config.steps,
                       "momawb": ours.score, "reference": float(ev.scores.mean()), "momawb_wall_s": ours.wall_time,
                       "reference_wall_s": ref_wall, "momawb_curve": ours.curve}
                results.append(row)
                print(f"{setting:11s} {algo:6s} seed {seed}: momawb {row['momawb']:6.2f}  d3rlpy {row['reference']:6.2f}"
                      f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    name = "results.json" if not overrides else "results-" + "-".join(f"{k}={v}" for k, v in overrides.items()) + ".json"
    (out / name).write_text(json.dumps(results, indent=1))
    print("\n| setting | algorithm | steps | momawb | d3rlpy | difference | Welch p | wall s (momawb run / d3rlpy fit) |")
    print("|---|---|---|---|---|---|---|---|")
    for setting in args.settings:
        for algo in args.algos:
            rows = [r for r in results if r["setting"] == setting and r["algo"] == algo]
            if not rows:
                continue
            a, b = [r["momawb"] for r in rows], [r["reference"] for r in rows]
            (ma, sa), (mb, sb) = mean_se(a), mean_se(b)
            p = stats.ttest_ind(a, b, equal_var=False).pvalue if len(rows) > 1 else float("nan")
            wall = (np.mean([r["momawb_wall_s"] for r in rows]), np.mean([r["reference_wall_s"] for r in rows]))
            print(f"| {setting} | {algo} ({rows[0]['method']}) | {rows[0]['steps']:,} | {ma:.2f} ± {sa:.2f} | "
                  f"{mb:.2f} ± {sb:.2f} | {ma - mb:+.2f} | {p:.2f} | {wall[0]:.0f} / {wall[1]:.0f} |")


if __name__ == "__main__":
    main()
