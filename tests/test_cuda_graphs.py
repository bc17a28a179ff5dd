"""The ``cuda_graph`` option (`momawb.cuda_graphs`, issue 19): refused without the settings it
needs, with what to do; a no-op on the CPU (eager steps, the same numbers). On a machine with
CUDA (plain ``pytest`` runs these there; ``make test-gpu`` runs the whole suite on CUDA), a
replayed step equals the eager step (within the CUDA tolerance of tests/devices.py), for the
world model and for MOMA-PPO (memory, bf16 and running normalisers included), a resumed run
captures again and continues as an uninterrupted one, and a step of another shape runs eagerly.
On the CPU the padded minibatch that the MOMA-PPO graph replays is checked against the unpadded."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from momawb import cuda_graphs, moma_ppo
from momawb.config import ConfigError
from momawb.cuda_graphs import GraphedStep
from momawb.datasets import Dataset
from momawb.domains import game
from momawb.generate import game_dataset
from momawb.loop import padded_minibatch
from momawb.model_trainer import EnsembleTrainer, fit_world_model
from momawb.moma_ppo import MomaPPO, MomaPPOConfig, train
from momawb.precision import adam
from momawb.runs import Run
from momawb.world_model import WorldModelConfig

from test_moma_ppo import SMALL, STABILISERS, DriftModel, reach_domain
from test_world_model import TINY, _params, fit_killed_and_resumed, linear_dataset, linear_domain

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (replays CUDA graphs)")
CUDA = torch.device("cuda")
CLOSE = dict(rtol=1e-3, atol=1e-4)         # tests/devices.py's CUDA tolerance


def test_cuda_graph_needs_its_settings_and_is_a_no_op_on_cpu(tmp_path):
    with pytest.raises(ConfigError, match=r"needs sampling: device \(got sampling='host'.*or cuda_graph: false"):
        WorldModelConfig(cuda_graph=True, fused_adam=True)
    with pytest.raises(ConfigError, match="needs fused_adam: true \\(got sampling='device'"):
        WorldModelConfig(cuda_graph=True, sampling="device")
    with pytest.raises(ConfigError, match="MomaPPOConfig.cuda_graph = True needs fused_adam: true.*cuda_graph: false"):
        MomaPPOConfig(cuda_graph=True)
    with pytest.raises(ValueError, match="fused_adam: true"):
        adam([torch.zeros(1, requires_grad=True)], 1e-3, capturable=True)
    with pytest.raises(ValueError, match="warmup must be >= 1"):
        GraphedStep(lambda x: x, warmup=0)
    with pytest.raises(ValueError, match="max_graphs must be >= 0"):
        GraphedStep(lambda x: x, max_graphs=-1)
    with pytest.raises(ValueError, match="inputs must be CUDA tensors, got devices \\['cpu'\\]"):
        GraphedStep(lambda x: x)(torch.zeros(1))
    # on the CPU (a gpu-preset run there, or resumed there): eager steps, the same numbers bit for bit
    ds, dom = linear_dataset(300), linear_domain()
    params = []
    for graph in (False, True):
        cfg = WorldModelConfig(**{**TINY, "device": "cpu"}, cuda_graph=graph, sampling="device", fused_adam=True)
        torch.manual_seed(0)
        tr = EnsembleTrainer(ds, dom, cfg, Run("wm", cfg, seed=1, root=tmp_path), torch.device("cpu"))
        assert tr.graphed is None
        for step in range(5):
            tr.update(step)
        params.append(_params(tr))
    assert torch.equal(*params)
    algo = MomaPPO(game.make_domain(), MomaPPOConfig(**SMALL, cuda_graph=True, fused_adam=True), torch.device("cpu"))
    assert algo.graphed is None                       # eager steps, so no padded minibatches either


def test_padded_minibatch_gives_the_unpadded_loss_and_gradients():
    """What a replayed MOMA-PPO step computes (`loop.padded_minibatch`, used when `MomaPPO.graphed`
    is set): a partial minibatch padded to batch_size with weight-0 rows has the unpadded loss,
    metrics and gradients."""
    dom = reach_domain()
    torch.manual_seed(0)
    algo = MomaPPO(dom, MomaPPOConfig(**{**SMALL, **STABILISERS, "memory": True, "memory_length": 3,
                                         "batch_size": 16}), torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    m, n_agents = 11, dom.n_agents
    mb = {"obs": torch.randn(m, n_agents, dom.obs_dim, generator=g), "hist": torch.randn(m, n_agents, 3,
          algo.agents.encoder.memory.embed.in_dim, generator=g), "states": torch.randn(m, dom.state_dim, generator=g),
          "actions": torch.rand(m, n_agents, dom.act_dim, generator=g) * 2 - 1, "old_logp": -torch.rand(m, generator=g),
          "adv": torch.randn(m, generator=g), "returns": torch.randn(m, generator=g)}
    idx, weights = padded_minibatch(torch.arange(m), 16)
    assert idx.tolist() == list(range(m)) + [0] * 5 and weights.tolist() == [1.0] * m + [0.0] * 5
    results = []
    for batch, w in ((mb, None), ({k: v[idx] for k, v in mb.items()}, weights)):
        algo.agents.zero_grad(set_to_none=True)
        loss, stats = moma_ppo.ppo_loss(algo.agents, batch, 0.3, algo.cfg, w)
        loss.backward()
        results.append((loss.detach(), stats, [p.grad.clone() for p in algo.agents.parameters()]))
    (l0, s0, g0), (l1, s1, g1) = results
    torch.testing.assert_close(l1, l0)
    torch.testing.assert_close(s1, s0)
    torch.testing.assert_close(g1, g0)


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
    graphed = GraphedStep(step_g, warmup=2, max_graphs=1)
    for i in range(14):
        if i == 8:                                   # a resume: new optimiser state tensors
            opt_g.load_state_dict(copy.deepcopy(opt_g.state_dict()))
            graphed.reset()
        rows = slice(0, 5) if i in (0, 5, 6, 12) else slice(None)      # two signatures: 5 and 16 rows
        torch.testing.assert_close(graphed(xs[i, rows], ys[i, rows]), eager(xs[i, rows], ys[i, rows]), **CLOSE)
    # call 0 (5 rows) warms up; 1-2 (16 rows) warm up, 3 captures 16 rows, 3-4 and 7 replay; 5, 6:
    # 5 rows again, but the one graph is taken: eager. Reset at 8: 8-9 warm up, 10 captures, 10,
    # 11 and 13 replay, 12 runs eagerly
    assert graphed.replays == 3 and list(graphed.graphs) == [(((16, 8), torch.float32), ((16, 1), torch.float32))]
    for a, b in zip(net_e.parameters(), net_g.parameters()):
        torch.testing.assert_close(a, b, **CLOSE)


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
    resumed, _ = fit_killed_and_resumed(ds, dom, cfg, tmp_path / "r", monkeypatch)
    torch.testing.assert_close(_params(resumed), _params(straight), **CLOSE)
    assert resumed.elites == straight.elites


@needs_cuda
@pytest.mark.parametrize("task", ["reach", "reach-memory", "reach-memory-bf16", "game"])
def test_moma_ppo_graph_equals_eager(task, tmp_path, monkeypatch):
    """Four updates with the running normalisers on (read by the graph at each replay, updated
    between iterations) and per-group clipping, minibatches of 32 rows: the continuous reach task
    in model mode (with and without the attention memory, which bf16 autocast covers), and the
    discrete game on its simulator (a partial last minibatch: padded in the graph). The teams and
    every logged training metric agree."""
    if task == "game":
        dom, ds, env, kw = game.make_domain(), game_dataset("unfavorable", root=tmp_path), None, {"mode": "simulator"}
    else:
        dom, g = reach_domain(), np.random.default_rng(0)
        s = g.uniform(-0.8, 0.8, (100, 2)).astype(np.float32)
        ds = Dataset(s, g.uniform(-1, 1, (100, 2)), -np.ones(100), s, np.zeros(100, bool), np.arange(100) % 5 == 4)
        env, kw = DriftModel(), {"mode": "model", "memory": "memory" in task, "memory_length": 3,
                                 "horizon": 4, "l_eps": 100.0, "precision": "bf16" if "bf16" in task else "fp32"}
    steps = []
    init = GraphedStep.__init__
    monkeypatch.setattr(GraphedStep, "__init__", lambda self, *a, **k: steps.append(self) or init(self, *a, **k))
    teams, metrics = {}, {}
    for graph in (False, True):
        cfg = MomaPPOConfig(**{**SMALL, **STABILISERS, **kw, "steps": 4, "transitions_per_update": 128,
                               "batch_size": 32, "device": "cuda", "cuda_graph": graph, "fused_adam": True})
        run = Run(f"g{graph}", cfg, seed=2, root=tmp_path)
        teams[graph] = train(cfg, ds, dom, run, progress=False, world_model=env)
        metrics[graph] = [{k: v for k, v in row.items() if k.startswith("train/")} for row in run.metrics()]
    assert len(steps) == 1 and steps[0].replays > 60    # of 4 x 5 x 4 (or 5) minibatch steps, 3 warm up
    a, b = teams[False].state_dict(), teams[True].state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], **CLOSE, msg=k)
    for row_e, row_g in zip(metrics[False], metrics[True], strict=True):
        assert row_e.keys() == row_g.keys()
        for k in row_e:
            assert row_g[k] == pytest.approx(row_e[k], rel=1e-3, abs=1e-4), k


def test_capturing_is_false_outside_a_capture():
    assert not cuda_graphs.capturing("cpu") and not cuda_graphs.capturing(torch.zeros(1).device)
