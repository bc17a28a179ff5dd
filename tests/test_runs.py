import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from momawb.runs import Run, TrainingDiverged, atomic_torch_save, pick_device, seed_everything, train_loop

sys.path.insert(0, str(Path(__file__).parent))
import toy_trainer  # noqa: E402
from devices import TEST_DEVICE, assert_same_numbers  # noqa: E402


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


def test_exception_then_resume(tmp_path):
    ref = toy_trainer.train(str(tmp_path / "ref"))
    run = Run("toy", {"lr": 1e-2}, seed=3, root=tmp_path / "b")
    toy = toy_trainer.Toy(run)

    def boom(step):
        if step == 17:
            raise KeyboardInterrupt
        return toy.update(step)

    with pytest.raises(KeyboardInterrupt):
        train_loop(run, toy, 40, boom, log_every=5, checkpoint_every=7, progress=False)
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
