import csv
import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from momawb.loop import TrainingDiverged, train_loop
from momawb.runs import Run, RunFileRepaired, atomic_torch_save, pick_device, seed_everything

sys.path.insert(0, str(Path(__file__).parent))
import toy_trainer  # noqa: E402
from devices import ON_CUDA, TEST_DEVICE, assert_same_numbers  # noqa: E402


def _params(toy):
    return torch.cat([p.detach().flatten() for p in toy.net.parameters()])


def _metrics(root):
    run_dir = next((Path(root) / "runs").glob("toy-*"))
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kill_at", [0, 6, 7, 23, 39])
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, kill_at):
    ref = toy_trainer.train(str(tmp_path / "ref"))
    root = tmp_path / "killed"
    proc = subprocess.run([sys.executable, toy_trainer.__file__, str(root), str(kill_at)],
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr  # really killed, mid-run
    resumed = toy_trainer.train(str(root))
    assert_same_numbers(_params(ref), _params(resumed))
    assert resumed.updates == ref.updates == 40
    assert_same_numbers(_metrics(tmp_path / "ref"), _metrics(root))
    csv = next((root / "runs").glob("toy-*")) / "metrics.csv"
    assert len(csv.read_text().splitlines()) == 1 + 8


def _run_dir(root) -> Path:
    return next((Path(root) / "runs").glob("toy-*"))


def _files(root) -> dict:
    """Every file of the run folder but the checkpoint, as bytes (equal runs write equal files)."""
    d = _run_dir(root)
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.name != "checkpoint.pt"}


def _parsed(files: dict) -> dict:
    out = {}
    for name, data in files.items():
        if name.endswith(".jsonl"):
            out[name] = [json.loads(line) for line in data.decode().splitlines()]
        elif name.endswith(".csv"):
            rows = csv.DictReader(data.decode().splitlines())
            out[name] = [{k: float(v) if v else None for k, v in r.items()} for r in rows]
        elif name.endswith(".json"):
            out[name] = json.loads(data)
        else:
            out[name] = data
    return out


def assert_same_files(root, ref_root, **extra) -> None:
    """The run folders hold the same files: byte for byte on CPU; on CUDA, the same rows and
    values within `assert_same_numbers`' tolerance (resumed CUDA runs are not bit-exact)."""
    got, want = _files(root), {**_files(ref_root), **extra}
    assert_same_numbers(_parsed(got), _parsed(want))
    if not ON_CUDA:
        assert got == want


def _resume(root, **kw):
    """Resume ``root``'s toy run; returns (toy, RunFileRepaired messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        toy = toy_trainer.train(str(root), **kw)
    return toy, [str(w.message) for w in caught if issubclass(w.category, RunFileRepaired)]


def test_killed_at_random_moments_resumes_to_an_uninterrupted_run(tmp_path):
    """Issue 14 item 12: a subprocess killed (SIGKILL) after random delays, mid-step, mid-log or
    mid-checkpoint, several times, resuming each time, ends with the files and weights of a run
    that was never interrupted."""
    kw = dict(n_steps=300, log_every=1, checkpoint_every=7)
    t0 = time.perf_counter()
    ref = toy_trainer.train(str(tmp_path / "ref"), **kw)
    span = time.perf_counter() - t0             # how long training takes here (kill times only, no limit)
    root, rng, kills = tmp_path / "killed", np.random.default_rng(0), 0
    for attempt in range(4):
        proc = subprocess.Popen([sys.executable, toy_trainer.__file__, str(root), "-1", "300", "1", "7"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(rng.uniform(0, span))
        proc.kill()
        rc = proc.wait()
        if rc == 0:
            break
        assert rc == -9, proc.stderr.read()
        kills += 1
    assert kills >= 2
    resumed, _ = _resume(root, **kw)
    assert_same_numbers(_params(ref), _params(resumed))
    assert resumed.updates == 300
    assert_same_files(root, tmp_path / "ref")             # metrics.jsonl, metrics.csv, result.json, config


def _crashed_at_step_17(root):
    """A run stopped by an exception at step 17: checkpoint at 14, rows 5, 10, 15 logged."""
    run = Run("toy", {"lr": 1e-2}, seed=3, root=root)
    toy = toy_trainer.Toy(run)

    def boom(step):
        if step == 17:
            raise KeyboardInterrupt
        return toy.update(step)

    with pytest.raises(KeyboardInterrupt):
        train_loop(run, toy, 40, boom, log_every=5, checkpoint_every=7, progress=False)
    return run


def test_torn_metrics_line_at_any_byte_is_repaired(tmp_path):
    """A crash while appending a row leaves metrics.jsonl cut at any byte after the rows the
    checkpoint holds (fsynced before it); the resume drops the torn line with a warning naming
    the file (old code: a bare JSONDecodeError) and ends with the uninterrupted run's files."""
    toy_trainer.train(str(tmp_path / "ref"))
    run = _crashed_at_step_17(tmp_path / "crashed")
    data = (run.dir / "metrics.jsonl").read_bytes()
    first_after = data.index(b'{"step": 15')
    for cut in range(first_after, len(data) + 1):
        root = tmp_path / f"cut{cut}"
        shutil.copytree(tmp_path / "crashed", root)
        (_run_dir(root) / "metrics.jsonl").write_bytes(data[:cut])
        resumed, msgs = _resume(root)
        assert_same_files(root, tmp_path / "ref")
        partial = data[first_after:cut].strip()
        try:
            json.loads(partial) if partial else None
            torn = False
        except ValueError:
            torn = True
        assert torn == any("metrics.jsonl: dropped line(s) [3]" in m for m in msgs), (cut, msgs)
        shutil.rmtree(root)


def test_torn_or_missing_csv_is_rebuilt(tmp_path):
    toy_trainer.train(str(tmp_path / "ref"))
    run = _crashed_at_step_17(tmp_path / "crashed")
    data = (run.dir / "metrics.csv").read_bytes()
    for cut in list(range(0, len(data) + 1, 5)) + [None]:
        root = tmp_path / f"cut{cut}"
        shutil.copytree(tmp_path / "crashed", root)
        if cut is None:
            (_run_dir(root) / "metrics.csv").unlink()
        else:
            (_run_dir(root) / "metrics.csv").write_bytes(data[:cut])
        _resume(root)
        assert_same_files(root, tmp_path / "ref")
        shutil.rmtree(root)


def test_interrupted_atomic_writes_leave_the_old_file_and_are_cleaned(tmp_path):
    """A crash inside `atomic_torch_save` or `write_json` leaves the old file and a temporary one
    (simulated here with the first bytes of a real checkpoint); the resume uses the old
    checkpoint, removes the temporary files with a warning naming them, and ends as if never cut."""
    toy_trainer.train(str(tmp_path / "ref"))
    run = _crashed_at_step_17(tmp_path / "crashed")
    partial = run.checkpoint_path.read_bytes()
    (run.dir / ".checkpoint.pt.abc123.tmp").write_bytes(partial[: len(partial) // 3])
    (run.dir / ".result.json.xyz.tmp").write_bytes(b'{"upd')
    resumed, msgs = _resume(tmp_path / "crashed")
    assert any(".checkpoint.pt.abc123.tmp" in m and ".result.json.xyz.tmp" in m for m in msgs), msgs
    assert_same_files(tmp_path / "crashed", tmp_path / "ref")
    assert not list(_run_dir(tmp_path / "crashed").glob(".*.tmp"))


def test_unreadable_config_and_json_results_are_repaired_with_a_warning(tmp_path):
    toy_trainer.train(str(tmp_path / "ref"))
    toy_trainer.train(str(tmp_path / "b"))
    d = _run_dir(tmp_path / "b")
    (d / "config.json").write_bytes(b'{"name": "toy", "se')          # e.g. a disk full mid-write
    (d / "result.json").write_bytes(b"\x00\x00\x00")
    with pytest.warns(RunFileRepaired, match="config.json could not be read"):
        run = Run("toy", {"lr": 1e-2}, seed=3, root=tmp_path / "b")
    with pytest.warns(RunFileRepaired, match=r"result.json could not be read .* moved aside to result.json.unreadable"):
        assert run.read_json("result.json") is None
    _resume(tmp_path / "b")                                          # writes result.json again
    assert_same_files(tmp_path / "b", tmp_path / "ref", **{"config.json.unreadable": b'{"name": "toy", "se',
                                                           "result.json.unreadable": b"\x00\x00\x00"})
    with pytest.warns(RunFileRepaired, match=r"line\(s\) \[2\] are not metric rows"):  # a reader skips bad lines
        (d / "metrics.jsonl").write_bytes(b'{"step": 5, "loss": 1.0}\n{"ste\n{"step": 10, "loss": 2.0}\n')
        assert [r["step"] for r in run.metrics()] == [5, 10]


def test_exception_then_resume(tmp_path):
    ref = toy_trainer.train(str(tmp_path / "ref"))
    _crashed_at_step_17(tmp_path / "b")
    resumed = toy_trainer.train(str(tmp_path / "b"))
    assert_same_numbers(_params(ref), _params(resumed))


def test_resume_is_not_a_fresh_start(tmp_path):
    toy_trainer.train(str(tmp_path), n_steps=14)
    run = Run("toy", {"lr": 1e-2}, seed=3, root=tmp_path)
    state, step = run.load()
    assert step == 14 and state["updates"] == 14


def test_run_on_default_device_started_again_for_more_steps(tmp_path):
    """Issue 13's minimal case: a run on the default device (CUDA on a GPU machine under
    MOMAWB_TEST_DEVICE=cuda), 4 steps with a checkpoint every 2, then started again for 8."""
    toy_trainer.train(str(tmp_path / "a"), n_steps=4, checkpoint_every=2)
    resumed = toy_trainer.train(str(tmp_path / "a"), n_steps=8, checkpoint_every=2)
    straight = toy_trainer.train(str(tmp_path / "b"), n_steps=8, checkpoint_every=2)
    assert resumed.updates == 8 and resumed.net[0].weight.device.type == torch.device(TEST_DEVICE).type
    assert_same_numbers(_params(straight), _params(resumed))
    assert_same_numbers(resumed.opt.state_dict()["state"], straight.opt.state_dict()["state"], "Adam state")


def test_checkpoint_rng_states_load_on_the_host_whatever_the_run_device(tmp_path):
    """The RNG states of a checkpoint are CPU byte tensors whatever device the run maps its state
    to (the CUDA resume crash, caught without a GPU: the 'meta' device stands in for CUDA)."""
    run = Run("toy", {"lr": 1e-2}, seed=3, root=tmp_path, device="cpu")
    toy = toy_trainer.Toy(run)
    run.save(toy.state_dict(), 5)
    expected = torch.rand(4), run.np_rng.integers(0, 1000, 3)
    torch.manual_seed(999)
    run.np_rng = np.random.default_rng(999)
    run.device = torch.device("meta")
    state, step = run.load()                # old code: TypeError: RNG state must be a torch.ByteTensor
    assert step == 5 and state["net"]["0.weight"].device.type == "meta"   # the state follows the run
    assert torch.equal(torch.rand(4), expected[0])                          # the RNG streams continue
    assert np.array_equal(run.np_rng.integers(0, 1000, 3), expected[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rng_states_are_saved_and_restored(tmp_path):
    run = Run("toy", {}, seed=3, root=tmp_path, device="cuda")
    torch.rand(1, device="cuda")                                # CUDA initialised, as in a CUDA run
    run.save({"x": torch.zeros(2, device="cuda")}, 1)
    expected = torch.rand(3, device="cuda").cpu()
    torch.cuda.manual_seed_all(12345)
    state, _ = run.load()
    assert state["x"].device.type == "cuda"
    assert torch.equal(torch.rand(3, device="cuda").cpu(), expected)


def test_nan_guard_names_step_and_keeps_checkpoint(tmp_path):
    run = Run("nan", {}, seed=0, root=tmp_path)
    toy = toy_trainer.Toy(run)

    def update(step):
        out = toy.update(step)
        return {"loss": float("nan")} if step == 12 else out

    with pytest.raises(TrainingDiverged, match=r"step 12.*checkpoint.*intact"):
        train_loop(run, toy, 40, update, checkpoint_every=5, progress=False)
    state, step = run.load()
    assert step == 10 and state["updates"] == 10


def test_deferred_reads_catch_a_nan_before_the_next_checkpoint(tmp_path):
    """read_every_step=False (the default for accelerator tensors): tensor metrics are read only at
    log and checkpoint steps (a device flag remembers a non-finite value in between); a NaN at step
    12 alone is caught at step 14 (a checkpoint step), before that checkpoint is written; logged
    rows hold floats equal to the tensors'."""
    run = Run("lazy", {}, seed=0, root=tmp_path)
    toy = toy_trainer.Toy(run)
    seen = []

    def update(step):
        toy.update(step)
        seen.append(step)
        return {"loss": torch.tensor(float("nan") if step == 12 else step / 4)}

    with pytest.raises(TrainingDiverged, match=r"step 14 \(.*between steps 12 and 14\).*checkpoint.*intact"):
        train_loop(run, toy, 40, update, checkpoint_every=5, log_every=3, progress=False, read_every_step=False)
    assert seen[-1] == 14
    state, step = run.load()
    assert step == 10 and state["updates"] == 10
    rows = run.metrics()
    assert [r["step"] for r in rows] == [3, 6, 9] and rows[-1]["loss"] == 8 / 4   # rows past the checkpoint go
    assert all(type(r["loss"]) is float for r in rows)


def test_run_refuses_other_config_in_same_dir(tmp_path):
    a = Run("x", {"a": 1}, root=tmp_path)
    (a.dir / "config.json").write_text(json.dumps({"config": {"a": 2}, "seed": 0}))
    with pytest.raises(FileExistsError, match="another config"):
        Run("x", {"a": 1}, root=tmp_path)


def test_run_dirs_and_bad_names(tmp_path):
    a, b = Run("x", {"a": 1}, root=tmp_path), Run("x", {"a": 2}, root=tmp_path)
    assert a.dir != b.dir and a.dir.parent == tmp_path.resolve() / "runs"
    with pytest.raises(ValueError):
        Run("../escape", {}, root=tmp_path)


def test_corrupt_checkpoint_is_reported_not_replaced(tmp_path):
    run = Run("c", {}, root=tmp_path)
    run.checkpoint_path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="cannot be read"):
        run.load()
    assert run.checkpoint_path.read_bytes() == b"not a checkpoint"


def test_atomic_save_leaves_no_partial_file(tmp_path):
    class Bad:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    target = tmp_path / "ck.pt"
    atomic_torch_save({"ok": 1}, target)
    with pytest.raises(RuntimeError):
        atomic_torch_save({"bad": Bad()}, target)
    assert torch.load(target) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_seed_and_device():
    a = seed_everything(5).normal(size=3)
    ta = torch.rand(3)
    b = seed_everything(5).normal(size=3)
    assert np.array_equal(a, b) and torch.equal(ta, (seed_everything(5), torch.rand(3))[1])
    assert pick_device("cpu").type == "cpu"
    assert pick_device().type == torch.device(TEST_DEVICE).type       # $MOMAWB_DEVICE, set by conftest
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")
    with pytest.raises(ValueError):
        seed_everything(-1)


def test_auto_device_without_override(monkeypatch):
    monkeypatch.delenv("MOMAWB_DEVICE", raising=False)
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("MOMAWB_DEVICE", "cpu")
    assert pick_device("auto").type == "cpu"


def test_a_second_trainer_of_a_run_waits_for_the_first(tmp_path):
    """Two trainers on one run (a rerun racing a killed sweep's workers) appended every metric
    row twice; the second now waits for the first's lock (a RunBusy warning naming it), then
    resumes from what it left."""
    import threading
    from momawb.runs import RunBusy
    straight = toy_trainer.train(str(tmp_path / "ref"), n_steps=20)
    first = Run("toy", {"lr": 1e-2}, seed=3, root=tmp_path / "a")
    held, release, result = threading.Event(), threading.Event(), {}

    def holder():
        with first.exclusive():
            held.set()
            release.wait(60)

    def second():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result["toy"] = toy_trainer.train(str(tmp_path / "a"), n_steps=20)
        result["warnings"] = [w for w in caught if issubclass(w.category, RunBusy)]

    h = threading.Thread(target=holder)
    h.start()
    held.wait(10)
    t = threading.Thread(target=second)
    t.start()
    t.join(1.0)
    assert t.is_alive() and not (first.dir / "metrics.jsonl").exists()      # waiting, nothing written
    release.set()
    h.join(10)
    t.join(60)
    assert len(result["warnings"]) == 1 and f"pid {__import__('os').getpid()}" in str(result["warnings"][0].message)
    assert [r["step"] for r in first.metrics()] == [r["step"] for r in Run(
        "toy", {"lr": 1e-2}, seed=3, root=tmp_path / "ref").metrics()] == [5, 10, 15, 20]
    assert_same_numbers(_params(straight), _params(result["toy"]))


def test_wall_time_adds_the_sessions_up(tmp_path):
    """result.json's wall_time covered only the last session of a resumed run."""
    run = Run("toy", {"lr": 1e-2}, seed=3, root=tmp_path)
    run._started -= 100.0                                   # a first session of 100 s ...
    run.save({"x": 1}, 5)                                   # ... checkpointed, then killed
    again = Run("toy", {"lr": 1e-2}, seed=3, root=tmp_path)
    again.load()
    assert 100.0 <= again.wall_time() < 110.0
    fresh = Run("toy", {"lr": 2e-2}, seed=3, root=tmp_path)
    assert fresh.load() is None and fresh.wall_time() < 10.0
