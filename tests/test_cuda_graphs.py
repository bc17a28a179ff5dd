"""The ``cuda_graph`` option (`momawb.cuda_graphs`, issue 19): refused, with what to do, where it
cannot work; on a machine with CUDA, a replayed step equals the eager step to rounding, for the
world model and for MOMA-PPO (memory and running normalisers included), and a resumed run
captures again and continues as an uninterrupted one."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from momawb import cuda_graphs
from momawb.config import ConfigError
from momawb.cuda_graphs import GraphedStep
from momawb.datasets import Dataset
from momawb.domains import game
from momawb.generate import game_dataset
from momawb.model_trainer import EnsembleTrainer, fit_world_model
from momawb.moma_ppo import MomaPPO, MomaPPOConfig, train
from momawb.precision import adam
from momawb.runs import Run
from momawb.world_model import WorldModelConfig

from test_moma_ppo import SMALL, STABILISERS, DriftModel, reach_domain
from test_world_model import TINY, linear_dataset, linear_domain

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CUDA = torch.device("cuda")
CLOSE = dict(rtol=1e-3, atol=1e-4)         # tests/devices.py's CUDA tolerance


def test_cuda_graph_is_refused_with_host_sampling_and_off_cuda(tmp_path):
    with pytest.raises(ConfigError, match="sampling: device and fused_adam: true"):
        WorldModelConfig(cuda_graph=True, fused_adam=True)
    with pytest.raises(ConfigError, match="sampling: device and fused_adam: true"):
        WorldModelConfig(cuda_graph=True, sampling="device")
    with pytest.raises(ConfigError, match="MomaPPOConfig.*fused_adam: true"):
        MomaPPOConfig(cuda_graph=True)
    with pytest.raises(ValueError, match="fused_adam: true"):
        adam([torch.zeros(1, requires_grad=True)], 1e-3, capturable=True)
    ds, dom = linear_dataset(200), linear_domain()
    cfg = WorldModelConfig(**{**TINY, "device": "cpu"}, cuda_graph=True, sampling="device", fused_adam=True)
    with pytest.raises(ValueError, match="WorldModelConfig.*needs a CUDA device.*on cpu.*cuda_graph: false"):
        EnsembleTrainer(ds, dom, cfg, Run("wm", cfg, root=tmp_path, device="cpu"), torch.device("cpu"))
    with pytest.raises(ValueError, match="MomaPPOConfig.*needs a CUDA device"):
        MomaPPO(game.make_domain(), MomaPPOConfig(**SMALL, cuda_graph=True, fused_adam=True), torch.device("cpu"))
    with pytest.raises(ValueError, match="warmup must be >= 1"):
        GraphedStep(lambda x: x, warmup=0)


@needs_cuda
def test_graphed_step_equals_eager_and_captures_again_after_reset():
    def build():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)).to(CUDA)
        opt = adam(net.parameters(), 1e-2, fused=True, capturable=True)

        def step(x, y):
            loss = (net(x) - y).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()
        return net, opt, step

    g = torch.Generator(device=CUDA).manual_seed(1)
    xs, ys = torch.randn(14, 16, 8, device=CUDA, generator=g), torch.randn(14, 16, 1, device=CUDA, generator=g)
    net_e, _, eager = build()
    net_g, opt_g, step_g = build()
    graphed = GraphedStep(step_g, warmup=2)
    for i in range(14):
        if i == 8:                                   # a resume: new optimiser state tensors
            opt_g.load_state_dict(copy.deepcopy(opt_g.state_dict()))
            graphed.reset()
        rows = slice(None) if i % 4 else slice(0, 5)           # two signatures: 16 and 5 rows
        torch.testing.assert_close(graphed(xs[i, rows], ys[i, rows]), eager(xs[i, rows], ys[i, rows]), **CLOSE)
    # calls 0-7: 16 rows warm up twice, then replay 4 times (5 rows: 2 warm-ups only); after the
    # reset, calls 8-13: 16 rows warm up twice again, then replay twice
    assert graphed.replays == 2 and len(graphed.graphs) == 1
    for a, b in zip(net_e.parameters(), net_g.parameters()):
        torch.testing.assert_close(a, b, **CLOSE)


def _params(model):
    return torch.cat([p.flatten() for p in model.ensemble.state_dict().values()])


@needs_cuda
def test_world_model_graph_equals_eager_and_resumes(tmp_path, monkeypatch):
    """The replayed update against the same trainer's eager one (the same capturable fused Adam),
    then a fit killed at step 37 and resumed against an uninterrupted fit."""
    ds, dom = linear_dataset(600), linear_domain()
    base = {**TINY, "device": "cuda", "eval_every": 20, "checkpoint_every": 10, "steps": 60, "sampling": "device"}
    cfg = WorldModelConfig(**base, cuda_graph=True, fused_adam=True)
    trainers = []
    for _ in range(2):
        torch.manual_seed(0)
        trainers.append(EnsembleTrainer(ds, dom, cfg, Run("wm", cfg, seed=1, root=tmp_path / "t"), CUDA))
    eager, graphed = trainers
    eager.graphed = None
    for step in range(30):
        ours, theirs = graphed.update(step), eager.update(step)
        for name, value in ours.items():
            torch.testing.assert_close(value, theirs[name], **CLOSE, msg=f"step {step} {name}: {value} {theirs[name]}")
    assert graphed.graphed.replays == 27
    for name, p in graphed.ensemble.state_dict().items():
        torch.testing.assert_close(p, eager.ensemble.state_dict()[name], **CLOSE, msg=name)

    straight = fit_world_model(ds, dom, cfg, Run("wm", cfg, seed=1, root=tmp_path / "g"), progress=False)
    original = EnsembleTrainer.update

    def crash(self, step):
        if step == 37:
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(EnsembleTrainer, "update", crash)
    with pytest.raises(KeyboardInterrupt):
        fit_world_model(ds, dom, cfg, Run("wm", cfg, seed=1, root=tmp_path / "r"), progress=False)
    monkeypatch.setattr(EnsembleTrainer, "update", original)
    resumed = fit_world_model(ds, dom, cfg, Run("wm", cfg, seed=1, root=tmp_path / "r"), progress=False)
    torch.testing.assert_close(_params(resumed), _params(straight), **CLOSE)
    assert resumed.elites == straight.elites


@needs_cuda
@pytest.mark.parametrize("task", ["reach", "reach-memory", "game"])
def test_moma_ppo_graph_equals_eager(task, tmp_path, monkeypatch):
    """Four updates with the running normalisers on (read by the graph at each replay, updated
    between iterations) and per-group clipping, minibatches of 32 rows: the continuous reach task
    in model mode (with and without the attention memory) and the discrete game on its simulator."""
    if task == "game":
        dom, ds, env, kw = game.make_domain(), game_dataset("unfavorable", root=tmp_path), None, {"mode": "simulator"}
    else:
        dom, g = reach_domain(), np.random.default_rng(0)
        s = g.uniform(-0.8, 0.8, (100, 2)).astype(np.float32)
        ds = Dataset(s, g.uniform(-1, 1, (100, 2)), -np.ones(100), s, np.zeros(100, bool), np.arange(100) % 5 == 4)
        env, kw = DriftModel(), {"mode": "model", "memory": task == "reach-memory", "memory_length": 3,
                                 "horizon": 4, "l_eps": 100.0}
    replays = []
    call = GraphedStep.__call__
    monkeypatch.setattr(GraphedStep, "__call__", lambda self, *a: replays.append(len(self.graphs)) or call(self, *a))
    teams = {}
    for graph in (False, True):
        cfg = MomaPPOConfig(**{**SMALL, **STABILISERS, **kw, "steps": 4, "transitions_per_update": 128,
                               "batch_size": 32, "device": "cuda", "cuda_graph": graph, "fused_adam": True})
        run = Run(f"g{graph}", cfg, seed=2, root=tmp_path)
        teams[graph] = train(cfg, ds, dom, run, progress=False, world_model=env)
        assert np.isfinite(run.metrics()[-1]["train/value_loss"])
    assert sum(n > 0 for n in replays) > 50           # most of the 4 x 5 x 4 minibatch steps were replays
    a, b = teams[False].state_dict(), teams[True].state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], **CLOSE, msg=k)


def test_capturing_is_false_outside_a_capture():
    assert not cuda_graphs.capturing("cpu") and not cuda_graphs.capturing(torch.zeros(1).device)
