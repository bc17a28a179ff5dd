"""Device boundaries, checked on a CPU-only machine (issue 13).

Three kinds of CUDA failure were invisible on CPU: checkpoints whose RNG states arrive on the GPU
(tests/test_runs.py), CPU tensors handed to CUDA networks, and tests that assume CPU (the
MOMAWB_TEST_DEVICE switch, tests/devices.py). Here: every place where data enters the learners
(dataset batches, start states and histories, simulator outputs, buffers) puts its tensors on the
device it was given, checked with PyTorch's 'meta' device standing in for CUDA; and no library
code creates a tensor on the default (CPU) device where it would meet a network's tensors.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from momawb.baselines.common import Batch, OnlineBuffer, ReplaySampler
from momawb.domains import game
from momawb.generate import game_dataset_config, generate_game
from momawb.model_env import SimulatorEnv
from momawb.rollouts import sample_starts

META = torch.device("meta")
ROOT = Path(__file__).resolve().parent.parent / "momawb"
CREATORS = {"as_tensor", "tensor", "zeros", "ones", "full", "empty", "arange", "randn", "rand", "randint",
            "linspace", "eye", "from_numpy"}
#: (file, function) -> why a tensor made there without ``device=`` is right
ALLOWED = {
    ("nets.py", "positional_encoding"): "a module buffer, moved with the module by .to(device)",
    ("model_trainer.py", "_inputs_targets"): "host staging of the dataset; EnsembleTrainer moves it to the device",
    ("runs.py", "_byte_state"): "RNG states must be CPU byte tensors",
    ("generate/reacher.py", "reacher_rollouts"): "a seed drawn on the host (torch.randint with a CPU generator)",
    ("generate/reacher.py", "act"): "the zero team's actions are read back on the host",
    ("estimate.py", "act"): "the probe's random actions come from a CPU generator and are read back on the host",
}


def _devices(obj) -> set[str]:
    if isinstance(obj, torch.Tensor):
        return {obj.device.type}
    if isinstance(obj, dict):
        return set().union(*map(_devices, obj.values())) if obj else set()
    if isinstance(obj, Batch):
        return _devices({k: v for k, v in vars(obj).items() if v is not None})
    return set()


def _dataset():
    return generate_game(game_dataset_config("neutral", n_episodes=20))


def test_dataset_batches_land_on_the_samplers_device():
    ds, dom = _dataset(), game.make_domain()
    batch = ReplaySampler(ds, dom, META, np.random.default_rng(0), memory=True, memory_length=4).sample(8)
    assert _devices(batch) == {"meta"} and batch.hist.shape == (8, 2, 4, 3)


def test_start_states_and_histories_land_on_the_given_device():
    ds, dom = _dataset(), game.make_domain()
    start = sample_starts(ds, dom, 5, np.random.default_rng(0), META, memory_length=4, with_sim_state=True)
    assert _devices(start) == {"meta"}


def test_simulator_outputs_land_on_the_envs_device():
    dom = game.make_domain()
    out = SimulatorEnv(dom, META).step(torch.ones(6, 1), torch.ones(6, 2, 1))
    assert _devices({k: v for k, v in vars(out).items() if v is not None}) == {"meta"}


def test_a_restored_buffer_stays_on_the_device_of_its_state():
    buf = OnlineBuffer(10)
    buf.add(Batch(*(torch.zeros(3, *s) for s in ((1,), (1,), (2, 1), (2, 1), (2, 1), (), ()))))
    state = {k: {n: (v.to(META) if v is not None else None) for n, v in d.items()} if k == "data" else d
             for k, d in buf.state_dict().items()}
    restored = OnlineBuffer(10)
    restored.load_state_dict(state)          # a checkpoint's state arrives on the run's device
    assert restored.size == 3 and _devices(restored.get(np.arange(3))) == {"meta"}


def _parents(tree):
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child.parent = node


def _default_device_tensors(path: Path, root: Path = ROOT) -> list[str]:
    """Calls ``torch.<creator>(...)`` without ``device=`` that are not moved at once (``.to``), not in
    an ``__init__`` (construction: module parameters and buffers move with ``.to(device)``) and not
    in `ALLOWED`."""
    tree = ast.parse(path.read_text())
    _parents(tree)
    rel, found = path.relative_to(root).as_posix(), []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                and node.func.attr in CREATORS):
            continue
        if any(k.arg == "device" for k in node.keywords):
            continue
        parent = getattr(node, "parent", None)
        if isinstance(parent, ast.Attribute) and parent.attr == "to":
            continue
        func = parent
        while func is not None and not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func = getattr(func, "parent", None)
        name = func.name if func is not None else "<module>"
        if name == "__init__" or (rel, name) in ALLOWED:
            continue
        found.append(f"{rel}:{node.lineno} in {name}(): torch.{node.func.attr}(...) without device=")
    return found


def test_library_code_creates_no_tensor_on_the_default_device():
    """A tensor made without ``device=`` lands on the CPU and meets a CUDA network later: every
    such call is either moved at once (``.to``), inside an nn.Module constructor (moved with the
    module), or listed in ALLOWED with the reason."""
    found = [f for p in sorted(ROOT.rglob("*.py")) for f in _default_device_tensors(p)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("snippet,bad", [("torch.zeros(3)", True), ("torch.zeros(3, device=d)", False),
                                         ("torch.as_tensor(x).to(d)", False)])
def test_the_scan_itself_can_fail(tmp_path, snippet, bad):
    f = tmp_path / "m.py"
    f.write_text(f"import torch\n\n\ndef f(x, d):\n    return {snippet}\n")
    assert bool(_default_device_tensors(f, tmp_path)) == bad
