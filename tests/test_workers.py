"""The local pool's scheduler (`momawb.workers.run_tasks`): dependencies, priorities, failures;
and a sweep whose world model fits while model-free jobs train gives the serial sweep's rows."""
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from momawb import sweep
from momawb.jobs import needs_world_model
from momawb.workers import Task, makespan, run_tasks


def _tasks(log, fail=()):
    def fn(name):
        log.append(name)
        if name in fail:
            raise RuntimeError(f"{name} failed")
        return name.upper()
    return [Task(fn, "mf1", priority=2), Task(fn, "wm", key="w", priority=0), Task(fn, "mf2", priority=2),
            Task(fn, "mb1", needs="w", priority=1), Task(fn, "mb2", needs="w", priority=1)]


def _run(tasks, workers=1, failed=None):
    out = {}
    with ThreadPoolExecutor(workers) as pool:
        run_tasks(tasks, pool, workers, torch.get_num_threads(), lambda i, r: out.__setitem__(i, r), failed)
    return out


def test_dependencies_and_priorities_decide_the_order():
    """One worker: the world model first, then the jobs waiting on it (they became ready later
    but outrank the model-free jobs), then the model-free jobs in list order."""
    log = []
    out = _run(_tasks(log))
    assert log == ["wm", "mb1", "mb2", "mf1", "mf2"]
    assert out == {0: "MF1", 1: "WM", 2: "MF2", 3: "MB1", 4: "MB2"}


def test_makespan_packs_as_run_tasks_runs():
    """Two workers: the world model (3 s) beside the model-free jobs (1 s each), then both
    MOMA-PPO jobs (5 s) at once: 8 s (world model and jobs in separate phases: 3 + 6 = 9 s)."""
    tasks = _tasks([])
    assert makespan(tasks, [1, 3, 1, 5, 5], workers=2) == 8
    assert makespan(tasks, [1, 3, 1, 5, 5], workers=1) == 15


def test_a_failed_task_skips_its_dependents_runs_the_rest_then_raises():
    log, heard = [], []
    with pytest.raises(RuntimeError, match="wm failed"):
        _run(_tasks(log, fail={"wm"}), workers=2, failed=lambda i, e: heard.append((i, str(e))))
    assert sorted(log) == ["mf1", "mf2", "wm"] and heard == [(1, "wm failed")]   # heard when it happened


def test_a_task_needing_an_unknown_key_is_refused_before_anything_runs():
    log = []
    tasks = _tasks(log) + [Task(log.append, "orphan", needs="nowhere")]
    with pytest.raises(ValueError, match="nowhere"):
        _run(tasks)
    assert log == []


def test_world_model_overlaps_model_free_jobs_with_the_serial_rows(tmp_path):
    fast = {"ibc": {"steps": 40, "eval_every": 20, "eval_episodes": 2, "checkpoint_every": 20, "log_every": 10},
            "moma_ppo": {"steps": 4, "eval_every": 2, "eval_episodes": 2, "checkpoint_every": 2, "log_every": 2},
            "world_model": {"steps": 60, "eval_every": 30, "log_every": 30, "checkpoint_every": 30}}

    def jobs(root):
        return sweep.grid(["moma_ppo", "ibc"], ["neutral"], (0, 1), domain="game", notebook="coordination_game",
                          preset="ci", overrides=fast, eval_episodes=5, root=str(root))

    key = lambda rows: sorted((r["method"], r["seed"], r["score"], tuple(map(tuple, r["curve"]))) for r in rows)  # noqa: E731
    serial = sweep.sweep(jobs(tmp_path / "s"), backend="serial", progress=False)
    pooled = sweep.sweep(jobs(tmp_path / "p"), backend="local", workers=2, progress=False)
    assert len(pooled) == 4 and [r["method"] for r in pooled] == ["moma_ppo", "moma_ppo", "ibc", "ibc"]
    assert key(pooled) == key(serial)


def test_only_model_based_moma_ppo_waits_for_a_world_model():
    """MOMA-PPO on the ground-truth simulator (Table 5) or online needs no world model: no fit
    is scheduled for it and it starts at once."""
    model = sweep.grid(["moma_ppo", "ibc"], ["neutral"], [0], notebook="coordination_game", preset="ci")
    sim = sweep.grid(["moma_ppo"], ["neutral"], [0], notebook="coordination_game", preset="ci",
                     overrides={"moma_ppo": {"mode": "simulator"}}, variant="simulator")
    assert [needs_world_model(j) for j in model + sim] == [True, False, False]
    tasks = sweep.tasks(model + sim)
    assert len(tasks) == 4 and tasks[0].key is not None                 # one world model, three jobs
    assert [t.needs is not None for t in tasks[1:]] == [True, False, False]
    assert sweep.tasks(sim)[0].needs is None and len(sweep.tasks(sim)) == 1


def test_a_failing_job_is_reported_at_once_and_raised_after_the_others(tmp_path, capsys):
    fast = {"steps": 20, "eval_every": 20, "eval_episodes": 2, "checkpoint_every": 10, "log_every": 10}
    good = sweep.grid(["ibc"], ["neutral"], [0], overrides={"ibc": fast}, eval_episodes=2, root=str(tmp_path))
    bad = sweep.grid(["ibc"], ["neutral"], [1], overrides={"ibc": {**fast, "lr": -1.0}}, eval_episodes=2,
                     root=str(tmp_path))
    with pytest.raises(Exception, match="lr"):
        sweep.sweep(bad + good, backend="local", workers=2, progress=False)
    assert "ibc seed 1 on neutral (default) failed" in capsys.readouterr().out
    assert len(list(tmp_path.rglob("result.json"))) == 1              # the good job finished


_ORPHAN_PARENT = """
import sys, time
from momawb.workers import process_pool
if __name__ == "__main__":
    pool = process_pool(1)
    fut = pool.submit(time.sleep, 600)
    pids = list(pool._processes)
    print(pids[0], flush=True)
    time.sleep(600)
"""


def test_pool_workers_end_when_the_sweeping_process_is_killed(tmp_path):
    """A killed notebook kernel or papermill must not leave workers that go on writing into runs
    (and then wait forever): each worker watches the process that started it."""
    import os
    import signal
    import subprocess
    import sys
    import time
    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    os.kill(worker, 0)                                     # alive, busy with its 600 s job
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    def gone() -> bool:                                    # exited (a zombie until reaped counts)
        try:
            with open(f"/proc/{worker}/status") as f:
                return any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
        except FileNotFoundError:
            return True

    for _ in range(100):                                   # it watches every 0.5 s
        if gone():
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError(f"worker {worker} outlived its killed parent by 10 s")
