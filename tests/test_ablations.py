"""MOMA-PPO's ablations (`momawb.ablations`, notebooks/ant_ablations): the variants' jobs, the
statistics of the conclusions table, the rollout summary, and the world model the no-clipping
variant shares with MOMA-PPO."""
import math

import numpy as np
import pytest

from momawb import ablations, jobs, notebook, sweep
from momawb.config import ConfigError
from momawb.train import method_config

ABL = {"preset": "ci", "dataset": "full-replay", "observability": ["fo", "po"], "methods": ["moma_ppo", "no_clip"],
       "seeds": None, "po_memory": None, "backend": "local", "ray_address": None, "workers_per_gpu": None, "live": None, "eval_episodes": None,
       "norm_rollouts": 8}


@pytest.fixture(autouse=True)
def _outputs(outputs):
    return outputs


def test_every_variant_is_one_job_per_setting_and_seed_with_its_overrides():
    jobs = ablations.ablation_jobs(list(ablations.VARIANTS), "full-replay", range(2), "ant", ["fo", "po"],
                                   overrides={"moma_ppo": {"steps": 7}}, notebook="ant", preset="ci")
    assert len(jobs) == len(ablations.VARIANTS) * 2 * 2
    by = {(j.variant, j.task, j.seed): j for j in jobs}
    inf = method_config("moma_ppo", "ant", "ci", by[("l_eps_inf", "po", 1)].section_overrides("moma_ppo"))
    assert math.isinf(inf.l_eps) and inf.steps == 7 and inf.entropy_target == -6.0   # variant + papermill + preset
    ale = method_config("moma_ppo", "ant", "ci", by[("aleatoric_5", "fo", 0)].section_overrides("moma_ppo"))
    assert (ale.penalty, ale.aleatoric_coef, ale.l_eps) == ("aleatoric", 5.0, 2.0)
    assert by[("no_clip", "fo", 0)].section_overrides("world_model") == {"clip_state": False}
    assert method_config("moma_ppo", "ant", "ci", by[("k_50", "fo", 0)].section_overrides("moma_ppo")).horizon == 50
    with pytest.raises(ValueError, match="unknown ablation variant 'k_7'"):
        ablations.ablation_jobs(["k_7"], "full-replay", [0], "ant", ["fo"])


def test_difference_finds_a_clear_effect_and_not_noise():
    rng = np.random.default_rng(0)
    ref = {"fo": [1.0, 1.1, 0.9], "po": [0.5, 0.6, 0.4]}
    worse = {s: [x - 0.5 for x in v] for s, v in ref.items()}
    d = ablations.difference(worse, ref)
    assert d["significant"] and d["high"] < 0 and d["mean"] == pytest.approx(-0.5)
    assert all(p < 0.05 for _, p, _ in d["per_setting"].values())
    noisy = {s: list(np.asarray(v) + rng.normal(0, 0.3, 3)) for s, v in ref.items()}
    same = ablations.difference(noisy, ref)
    assert same["low"] < 0 < same["high"] and not same["significant"]
    one = ablations.difference({"fo": [0.2]}, {"fo": [0.1]})
    assert math.isnan(one["per_setting"]["fo"][1]) and math.isnan(one["low"]) and not one["significant"]


def test_equal_scores_are_no_difference_not_one_seed():
    same = ablations.difference({"fo": [0.5, 0.5]}, {"fo": [0.5, 0.5]})
    assert ablations._verdict({"fo": 0}, same) == "fo: reproduced (n.s.)"
    assert ablations._verdict({"fo": 0}, ablations.difference({"fo": [0.5]}, {"fo": [0.4]})) == \
        "fo: cannot resolve (one seed)"


def test_conclusions_table_gives_verdicts():
    rows = []
    for v, shift in (("moma_ppo", 0.0), ("lambda_g_0", -0.5), ("lambda_r_0", 0.6)):
        for task, base in (("fo", 1.0), ("po", 0.5)):
            rows += [{"variant": v, "task": task, "score": base + shift + e} for e in (-0.05, 0.0, 0.05)]
    table = ablations.comparisons(rows)
    verdict = {r[0]: r[-1] for r in table.rows}
    assert verdict["lambda_g = 0 hurts"] == "fo: reproduced; po: reproduced"
    assert verdict["lambda_r = 0 does not hurt"] == "fo: contradicted; po: contradicted"
    assert len(table.rows) == 2   # conclusions without runs are left out


def test_rollout_summary_means_over_training():
    rows = [{"step": 1, "train/loss": 1.0},
            {"step": 10, "rollout/length": 2.0, "rollout/timeout_frac": 1.0, "rollout/eps_g": 3.0,
             "rollout/clipped": 0.1, "rollout/penalty": 0.2, "rollout/reward": -1.0},
            {"step": 20, "rollout/length": 4.0, "rollout/timeout_frac": 0.5, "rollout/eps_g": 1.0,
             "rollout/clipped": 0.0, "rollout/penalty": 0.1, "rollout/reward": -0.5}]
    s = ablations.rollout_summary(rows)
    assert s["length"] == 3.0 and s["timeout_frac"] == 0.75 and s["penalty_share"] == pytest.approx(0.15 / 0.75)
    assert ablations.rollout_summary(rows[:1]) == {}


def test_no_clip_shares_the_fitted_model_and_trains_its_own_policy(tmp_path):
    """The no-clipping variant changes only `WorldModel.step`: one fitted ensemble (one world-model
    job), but MOMA-PPO runs key on the model's step options, so it never reuses MOMA-PPO's run."""
    fast = {"world_model": {"hidden": [16], "steps": 20, "eval_every": 10, "checkpoint_every": 10},
            "moma_ppo": {"steps": 2, "hidden": [16], "transitions_per_update": 60, "eval_every": 0,
                         "log_every": 1, "checkpoint_every": 1}}
    jobs = []
    for v in ("moma_ppo", "no_clip"):
        over = {s: {**fast.get(s, {}), **o} for s, o in ablations.VARIANTS[v].items()}
        jobs += sweep.grid(["moma_ppo"], ["neutral"], [0], "game", overrides={**fast, **over}, eval_episodes=2,
                           root=str(tmp_path), variant=v)
    assert len(sweep._wm_jobs(jobs)) == 1
    clip, free = (sweep.fit_world_model_job(j) for j in jobs)
    assert clip.config.clip_state and not free.config.clip_state and free.meta["run"] == clip.meta["run"]
    assert free.with_options(clip_state=False) is free and free.with_options(clip_state=True).ensemble is free.ensemble
    with pytest.raises(ValueError, match="change what was fitted"):
        clip.with_options(hidden=(8,))
    rows = sweep.sweep(jobs, backend="serial", progress=False)
    assert rows[0]["run_dir"] != rows[1]["run_dir"]
    assert rows[1]["rollouts"]["clipped"] == 0.0 and {"length", "eps_g", "penalty_share"} <= set(rows[0]["rollouts"])


def test_notebook_reads_the_ant_presets_sections():
    from test_notebook_setup import papermill_ns
    nb = notebook.setup("ant_ablations", papermill_ns(ABL, {"moma_ppo": {"steps": 3}}), quiet=True)
    assert nb.job_notebook == "ant" and nb.seeds == 1 and nb.eval_episodes == 1   # params/ant_ablations/ci.yaml
    assert nb.sections["moma_ppo"]["entropy_target"] == -6.0 and nb.sections["moma_ppo"]["steps"] == 3
    assert nb.sections["world_model"]["hidden"] == (64, 64)                        # params/ant/ci.yaml
    assert nb.overrides == {"moma_ppo": {"steps": 3}}


def test_own_sections_in_an_ablation_preset_are_refused(tmp_path, monkeypatch):
    from momawb import config as cfg
    from test_notebook_setup import papermill_ns
    for name in ("ant", "ant_ablations"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "ci.yaml").write_text((cfg.params_dir() / name / "ci.yaml").read_text())
    (tmp_path / "ant_ablations" / "ci.yaml").write_text("preset: ci\nseeds: 1\npo_memory: false\neval_episodes: 1\n"
                                                         "moma_ppo: {steps: 2}\n")
    monkeypatch.setattr(cfg, "PARAMS_DIR", tmp_path)
    with pytest.raises(ConfigError, match=r"sections \['moma_ppo'\] belong in params/ant/ci.yaml"):
        notebook.setup("ant_ablations", papermill_ns(ABL), quiet=True)


def test_a_diverged_variant_is_a_recorded_row_not_a_crash(tmp_path, monkeypatch):
    """Ablation jobs record a training that diverges (the no-clipping variant can: predicted states
    explode) as a row with score nan and the error; other jobs still raise."""
    import json

    from momawb.loop import TrainingDiverged
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 10, "eval/score": 0.2, "rollout/length": 3.0,
                                                       "rollout/timeout_frac": 0.0, "rollout/eps_g": 1e9,
                                                       "rollout/clipped": 0.0, "rollout/penalty": 0.2,
                                                       "rollout/reward": 1.0}) + "\n")

    def boom(job, progress=False):
        raise TrainingDiverged("non-finite values at step 20", 20, run_dir)

    monkeypatch.setattr(jobs, "_train", boom)
    job = ablations.ablation_jobs(["no_clip"], "full-replay", [0], "ant", ["po"])[0]
    row = jobs.run_job(job)
    assert math.isnan(row["score"]) and row["diverged_step"] == 20 and row["curve"] == [(10, 0.2)]
    assert row["variant"] == "no_clip" and row["rollouts"]["eps_g"] == 1e9
    assert ablations.diverged([row]) == {("no_clip", "po"): [0]} and ablations.scored([row]) == []
    assert ablations.rollout_table([row]).rows[0][2] == "1 (1)"
    import dataclasses
    with pytest.raises(TrainingDiverged):
        jobs.run_job(dataclasses.replace(job, on_diverge="raise"))
    import pickle
    err = pickle.loads(pickle.dumps(TrainingDiverged("x", 3, run_dir)))   # crosses the process pool
    assert (str(err), err.step, err.run_dir) == ("x", 3, run_dir)
