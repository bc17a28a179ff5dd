"""Sweeps: local pool and Ray give the same rows as a serial run; finished jobs are skipped;
an interrupted job resumes from its checkpoint."""
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from momawb import results, sweep, workers

FAST = {"ibc": {"steps": 60, "eval_every": 30, "eval_episodes": 2, "checkpoint_every": 20, "log_every": 10,
                "hidden": [32, 32], "batch_size": 64}}


def _jobs(root, seeds=(0, 1), datasets=("unfavorable",)):
    return sweep.grid(["ibc"], list(datasets), seeds, domain="game", overrides=FAST, eval_episodes=5,
                      root=str(root))


def _scores(rows):
    return sorted((r["dataset"], r["seed"], r["score"], tuple(map(tuple, r["curve"]))) for r in rows)


def test_local_pool_matches_serial_and_skips_finished(tmp_path):
    serial = sweep.sweep(_jobs(tmp_path / "a"), backend="serial", progress=False)
    pooled = sweep.sweep(_jobs(tmp_path / "b"), backend="local", workers=2, progress=False)
    assert _scores(serial) == _scores(pooled) and len(serial) == 2
    files = sorted((tmp_path / "b").rglob("result.json"))
    stamps = [p.stat().st_mtime_ns for p in files]
    again = sweep.sweep(_jobs(tmp_path / "b"), backend="local", workers=2, progress=False)
    assert _scores(again) == _scores(pooled)
    assert [p.stat().st_mtime_ns for p in files] == stamps  # not trained or evaluated again
    path = results.write_results(tmp_path / "results.json", again, notebook="t")
    blob = json.loads(path.read_text())
    assert blob["rows"][0]["config"] and blob["versions"]["torch"] and blob["rows"][0]["wall_time"] > 0


def test_killed_sweep_resumes(tmp_path):
    """SIGKILL a running sweep once its first job finished; starting it again skips that job
    and the others end with exactly the numbers of an uninterrupted sweep."""
    slow = {"ibc": {**FAST["ibc"], "steps": 300, "eval_every": 100}}
    ref = sweep.sweep(sweep.grid(["ibc"], ["unfavorable"], (0, 1), overrides=slow, eval_episodes=5,
                                 root=str(tmp_path / "ref")), backend="serial", progress=False)
    root = tmp_path / "killed"
    code = ("import sys, json; from momawb import sweep; "
            f"jobs = sweep.grid(['ibc'], ['unfavorable'], (0, 1), overrides=json.loads({json.dumps(json.dumps(slow))}), "
            f"eval_episodes=5, root={str(root)!r}); sweep.sweep(jobs, backend='serial', progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 300
    while not list(root.rglob("result.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = list(root.rglob("result.json"))
    assert len(first) == 1, "the sweep should have been killed after its first job"
    stamp = first[0].stat().st_mtime_ns
    rows = sweep.sweep(sweep.grid(["ibc"], ["unfavorable"], (0, 1), overrides=slow, eval_episodes=5,
                                  root=str(root)), backend="serial", progress=False)
    assert first[0].stat().st_mtime_ns == stamp
    assert _scores(rows) == _scores(ref)


def test_a_misspelt_overrides_section_is_refused_before_anything_runs():
    """A section no config has would leave every job on its preset's values (and hand back
    the cached runs of those values) without a word."""
    from momawb.config import ConfigError
    with pytest.raises(ConfigError, match=r"unknown section 'moma-ppo' \(did you mean 'moma_ppo'\?\)"):
        sweep.grid(["moma_ppo"], ["neutral"], range(1), overrides={"moma-ppo": {"l_eps": 0.03}})
    with pytest.raises(ConfigError, match=r"overrides\['iql'\] must be a mapping"):
        sweep.grid(["iql"], ["neutral"], range(1), overrides={"iql": 3})
    jobs = sweep.grid(["iql"], ["neutral"], range(1), overrides={"iql": {"steps": 3}, "world_model": {"steps": 2}})
    assert jobs[0].section_overrides("iql") == {"steps": 3}


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be"):
        sweep.sweep([], backend="dask")


@pytest.mark.ray
def test_ray_sweep_on_local_instance(tmp_path, monkeypatch):
    import shutil
    import tempfile
    ray = pytest.importorskip("ray")
    ray_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # AF_UNIX socket paths must stay < 108 bytes
    monkeypatch.setenv("RAY_TMPDIR", ray_dir)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # no token written to ~/.ray
    serial = sweep.sweep(_jobs(tmp_path / "a"), backend="serial", progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=ray_dir)
    try:
        rows = sweep.sweep(_jobs(tmp_path / "r"), backend="ray", progress=False)
    finally:
        ray.shutdown()
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert _scores(rows) == _scores(serial)


def test_dataset_published_by_a_concurrent_worker_is_loaded(tmp_path):
    """Two workers generating one cached dataset at once: the second finds the first's file."""
    from momawb import generate
    cfg = generate.game_dataset_config("neutral", seed=3)
    other = generate.generate_game(cfg)
    path = tmp_path / "game.hdf5"

    def make():  # the other worker publishes while this one generates
        other.save(path)
        return generate.generate_game(cfg)

    ds = generate.cached(path, make)
    assert ds.source == str(path) and np.array_equal(ds.actions, other.actions)


def test_each_dataset_is_prepared_once_before_training():
    jobs = _jobs("/tmp/x", seeds=(0, 1, 2), datasets=("unfavorable", "neutral"))
    assert len(sweep._dataset_jobs(jobs)) == 2 * len({j.data_seed for j in jobs})


def _visible_gpu(_):
    import os
    import time
    time.sleep(0.05)   # let every worker take tasks
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_several_workers_per_gpu_are_pinned_to_their_gpu():
    """workers_per_gpu: each GPU is given to that many local workers (CUDA_VISIBLE_DEVICES, set
    before torch starts in the worker); Ray tasks ask for a 1/workers_per_gpu share."""
    assert sweep.gpu_slots(2, n_gpus=3) == [0, 0, 1, 1, 2, 2] and sweep.gpu_slots(None, n_gpus=3) == []
    assert sweep.ray_resources(4) == {"num_cpus": 1, "num_gpus": 0.25} and sweep.ray_resources(None) == {"num_cpus": 1}
    pool = sweep.process_pool(4, [0, 0, 1, 1])
    try:
        seen = dict(pool.map(_visible_gpu, range(16)))     # worker pid -> its GPU
    finally:
        pool.shutdown()
    assert set(seen.values()) <= {"0", "1"}
    assert all(list(seen.values()).count(g) <= 2 for g in ("0", "1"))   # at most 2 workers per GPU
    with pytest.raises(ValueError, match="workers_per_gpu must be >= 1"):
        sweep.sweep([], workers_per_gpu=0)


def test_mps_running_reads_the_control_pipe(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    assert not workers.mps_running()
    os.mkfifo(tmp_path / "control")            # what `nvidia-cuda-mps-control -d` creates there
    assert workers.mps_running()


def test_more_than_two_runs_per_gpu_without_mps_warn(monkeypatch):
    """Without MPS the runs on one GPU take turns (README "Speed on a GPU"): a local sweep that
    puts more than two on one GPU says so and what to do; two, MPS, Ray or no GPU are quiet."""
    monkeypatch.setattr(workers, "mps_running", lambda: False)
    monkeypatch.setattr(sweep.torch.cuda, "is_available", lambda: True)
    assert workers.pool_size(None, [0, 0, 1, 1]) == 4 and workers.pool_size(3, [0, 0, 1, 1]) == 3
    assert workers.runs_per_gpu(3, [0, 0, 0, 1, 1, 1], True) == 3 and workers.runs_per_gpu(4, [0, 1] * 4, True) == 2
    assert workers.runs_per_gpu(16, [], True) == 16 and workers.runs_per_gpu(16, [], False) == 0   # one default GPU
    assert workers.runs_per_gpu(0, [0, 0], True) == 0                                              # no jobs
    with pytest.warns(UserWarning, match=r"4 runs on one GPU without NVIDIA MPS.*nvidia-cuda-mps-control -d.*"
                                         r"workers_per_gpu=2"):
        sweep._warn_if_gpus_shared("local", 8, workers.gpu_slots(4, n_gpus=2))
    with pytest.warns(UserWarning, match="16 runs on one GPU"):     # no workers_per_gpu: all on the default GPU
        sweep._warn_if_gpus_shared("local", 16, [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sweep._warn_if_gpus_shared("local", 8, workers.gpu_slots(2, n_gpus=4))
        sweep._warn_if_gpus_shared("local", 2, workers.gpu_slots(8, n_gpus=1))   # two jobs: two at once
        sweep._warn_if_gpus_shared("ray", 8, workers.gpu_slots(8, n_gpus=1))
        sweep.sweep([], workers_per_gpu=8)                                      # nothing to run
        monkeypatch.setattr(workers, "mps_running", lambda: True)
        sweep._warn_if_gpus_shared("local", 8, workers.gpu_slots(8, n_gpus=1))
        monkeypatch.setattr(workers, "mps_running", lambda: False)
        monkeypatch.setattr(sweep.torch.cuda, "is_available", lambda: False)
        sweep._warn_if_gpus_shared("local", 16, [])


def test_on_diverge_reaches_every_job_and_rows_split_by_it():
    jobs = sweep.observation_grid(["iql", "ibc"], "medium", range(2), "ant", ["fo", "po"], on_diverge="record")
    assert len(jobs) == 6 and {j.on_diverge for j in jobs} == {"record"}            # IQL under fo only
    assert {j.on_diverge for j in sweep.grid(["ibc"], ["neutral"], [0])} == {"raise"}
    with pytest.raises(ValueError, match="on_diverge"):
        sweep.grid(["ibc"], ["neutral"], [0], on_diverge="ignore")
    rows = [{"method": "ibc", "task": "po", "seed": 1, "score": float("nan"), "diverged": "non-finite at step 4"},
            {"method": "ibc", "task": "po", "seed": 0, "score": 0.3},
            {"method": "moma_ppo", "variant": "k25", "task": "fo", "seed": 2, "score": float("nan"), "diverged": "x"}]
    assert results.scored(rows) == [rows[1]]
    assert results.diverged(rows) == {("ibc", "po"): [1], ("k25", "fo"): [2]}
