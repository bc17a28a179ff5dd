"""MOMA-PPO: timeout-aware GAE, adaptive rollouts, QMIX value, memory, learning tests, resume."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from momawb import config as cfgmod
from momawb import nets
from momawb.domains import Domain, game
from momawb.evaluation import evaluate
from momawb.generate import game_dataset
from momawb.model_env import SimulatorEnv, StepOut
from momawb.moma_ppo import (MomaPPO, MomaPPOAgents, MomaPPOConfig, model_rollouts, timeout_gae,
                             train)
from momawb.runs import Run
from devices import TEST_DEVICE, assert_same_numbers

SMALL = dict(hidden=(32, 32), embed_dim=16, log_every=1, checkpoint_every=0, eval_every=0)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one intra-op thread is faster, and much faster on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------------- GAE
def reference_gae(r, v, v_next, f, tau, gamma, lam):
    """PAPER.md section 3, literally: one reverse loop over the concatenated rollouts."""
    ret, adv = v_next[-1] * f[-1], 0.0
    returns, advs = [0.0] * len(r), [0.0] * len(r)
    for t in reversed(range(len(r))):
        ret = r[t] + gamma * f[t] * (ret * tau[t] + (1 - tau[t]) * v_next[t] * f[t])
        delta = r[t] + gamma * v_next[t] * f[t] - v[t]
        adv = delta + gamma * lam * adv * f[t] * tau[t]
        returns[t], advs[t] = ret, adv
    return np.array(returns), np.array(advs)


def test_gae_matches_python_reference_on_random_masks():
    g = np.random.default_rng(0)
    b, k = 7, 9
    r, v, vn = (g.normal(size=(b, k)) for _ in range(3))
    f = (g.random((b, k)) > 0.2).astype(float)
    tau = (g.random((b, k)) > 0.3).astype(float)
    tau[:, -1] = 0.0                                    # every rollout times out at step k at the latest
    assert (f == 0).any() and (tau[:, :-1] == 0).any() and ((f == 0) & (tau == 0)).any()
    T = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    ret, adv = timeout_gae(T(r), T(v), T(vn), T(f), T(tau), 0.99, 0.98)
    ref_ret, ref_adv = reference_gae(r.ravel(), v.ravel(), vn.ravel(), f.ravel(), tau.ravel(), 0.99, 0.98)
    np.testing.assert_allclose(ret.numpy().ravel(), ref_ret, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(adv.numpy().ravel(), ref_adv, rtol=1e-12, atol=1e-12)


def test_timeout_never_leaks_value():
    gamma, lam, k = 0.9, 0.95, 5
    r = torch.zeros(2, k)
    v, vn = torch.zeros(2, k), torch.full((2, k), 2.0)
    f, tau = torch.ones(2, k), torch.ones(2, k)
    tau[0, 1] = 0.0                                     # rollout 0: timeout after step 1 ...
    tau[:, -1] = 0.0
    r[0, 2:] = 1e6                                      # ... garbage after it (masked steps)
    r[1] = 1e6                                          # ... and a huge neighbouring rollout
    ret, adv = timeout_gae(r, v, vn, f, tau, gamma, lam)
    assert ret[0, 1] == pytest.approx(gamma * 2.0)      # bootstraps from V(s'_1), nothing from later
    assert adv[0, 1] == pytest.approx(gamma * 2.0)      # restarts from the TD error
    assert ret[0, 0] == pytest.approx(gamma * ret[0, 1])
    assert adv[0, 0] == pytest.approx((gamma * 2.0) + gamma * lam * adv[0, 1])
    # a terminal cuts the bootstrap too
    f[0, 1] = 0.0
    ret, adv = timeout_gae(r, v, vn, f, tau, gamma, lam)
    assert ret[0, 1] == 0.0 and adv[0, 1] == 0.0


# ---------------------------------------------------------------------------- adaptive rollouts
class CounterEnv:
    """A fake model env: s' = s + 1, eps_g = s', reward 1, terminal when s' == term_at."""

    def __init__(self, term_at=None):
        self.term_at = term_at

    def step(self, states, actions, generator=None):
        nxt = states + 1
        eps = nxt[:, 0]
        nt = torch.ones_like(eps, dtype=torch.bool) if self.term_at is None else eps != self.term_at
        return StepOut(nxt, torch.ones_like(eps), nt, 0.5 * eps, eps, torch.zeros_like(eps))


def _agents(domain, **kw):
    cfg = MomaPPOConfig(**{**SMALL, **kw})
    return MomaPPOAgents(domain, cfg), cfg


def test_eps_g_threshold_ends_rollout_as_timeout():
    dom = game.make_domain()
    agents, cfg = _agents(dom, horizon=10, l_eps=5.0, lambda_r=0.0, lambda_g=0.1)
    starts = torch.tensor([[0.0], [2.0], [4.0], [10.0]])
    ro = model_rollouts(agents, CounterEnv(), dom, {"states": starts, "hist": None, "qpos": None, "qvel": None}, cfg)
    lengths = ro.alive.sum(1).tolist()
    assert lengths == [5, 3, 1, 1]                      # first step with eps_g = s0 + j + 1 >= 5
    for i, n in enumerate(lengths):
        assert ro.not_timeout[i, n - 1] == 0 and ro.not_timeout[i, : n - 1].eq(1).all()
        assert ro.not_terminal[i, :n].eq(1).all()       # a timeout, not a terminal
    # the penalty uses eps clamped to l_eps, computed after the timeout test
    np.testing.assert_allclose(ro.rewards[3, 0].item(), 1 - 0.1 * 5.0)
    np.testing.assert_allclose(ro.rewards[0, 1].item(), 1 - 0.1 * 2.0)
    assert ro.stats()["rollout/timeout_frac"] == 1.0
    # l_eps = inf: no adaptive rollouts; a terminal from the model ends rollout 0 at s' = 3
    agents, cfg = _agents(dom, horizon=6, l_eps="inf")
    ro = model_rollouts(agents, CounterEnv(term_at=3.0), dom,
                        {"states": starts, "hist": None, "qpos": None, "qvel": None}, cfg)
    assert ro.alive.sum(1).tolist() == [3, 1, 6, 6]
    assert ro.not_terminal[0, 2] == 0 and ro.not_timeout[2, -1] == 0 and ro.not_timeout[2, :-1].eq(1).all()


def test_rollout_histories_slide_with_own_actions():
    dom = game.make_domain()
    agents, cfg = _agents(dom, horizon=3, memory=True, memory_length=4, l_eps="inf")
    hist = torch.randn(5, 2, 4, 3)
    ro = model_rollouts(agents, SimulatorEnv(dom), dom, {"states": torch.ones(5, 1), "hist": hist,
                                                         "qpos": None, "qvel": None}, cfg)
    assert torch.equal(ro.hist[:, 0], hist)
    onehot = torch.nn.functional.one_hot(ro.actions[:, 0, :, 0].long(), 2).float()
    assert torch.equal(ro.hist[:, 1, :, -1], torch.cat([torch.ones(5, 2, 1), onehot], -1))
    assert torch.equal(ro.hist[:, 1, :, :-1], hist[:, :, 1:])
    assert torch.equal(ro.next_hist[:, 0], ro.hist[:, 1])


# ---------------------------------------------------------------------------- networks
def test_qmix_value_shapes_and_gradients():
    dom = Domain("toy", "t", 3, 5, np.array([[0, 1], [2, 3], [4, -1]]), 2, None, 10, (0.0, 1.0))
    agents, _ = _agents(dom, memory=True, memory_length=4)
    states, hist = torch.randn(8, 5), torch.randn(8, 3, 4, dom.obs_dim + 2)
    x = agents.encoder(dom.observe(states), hist)
    assert x.shape == (8, 3, 16 + 2)
    assert agents.values(x).shape == (8, 3, 1)
    w, bias = agents.mixer.weights(states)
    assert w.shape == (8, 3) and bias.shape == (8,)
    v = agents.value(x, states)
    assert v.shape == (8,)
    torch.testing.assert_close(v, (w * agents.values(x)[..., 0]).sum(-1) + bias)
    v.sum().backward()
    for name, mod in (("mixer", agents.mixer), ("values", agents.values), ("memory", agents.encoder.memory)):
        grads = [p.grad for p in mod.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"no gradient reaches {name}"


def reference_memory(mem, hist: torch.Tensor) -> torch.Tensor:
    """PAPER.md section 4 layer by layer, one agent at a time: embed + positional encoding,
    q, k, v from the embedding, self-attention, skip + layer norm, soft-attention pooling."""
    out = []
    for i in range(mem.n):
        x = hist[:, i]                                                       # (B, L, F)
        z = x @ mem.embed.weight[i] + mem.embed.bias[i] + mem.pos
        q, k, v = (z @ mem.qkv.weight[i] + mem.qkv.bias[i]).chunk(3, -1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(mem.e), -1)
        z = torch.nn.functional.layer_norm(z + att @ v, (mem.e,)) * mem.norm_gain[i] + mem.norm_bias[i]
        w = torch.softmax((torch.tanh(z @ mem.soft_key.weight[i]) @ mem.soft_query[i])[..., 0], -1)
        out.append((w.unsqueeze(-1) * z).sum(-2))
    return torch.stack(out, 1)


def test_memory_equals_the_layer_by_layer_computation_with_its_gradients():
    """The memory never forms q, k and v (its logits are a bilinear form of the (o, a, step) rows,
    its values enter through att x~; nets.AgentMemory): the same function and gradients as
    embedding first."""
    torch.manual_seed(0)
    dom = Domain("toy", "t", 3, 5, np.array([[0, 1], [2, 3], [4, -1]]), 2, None, 10, (0.0, 1.0))
    agents, _ = _agents(dom, memory=True, memory_length=4)
    mem = agents.encoder.memory.double()
    with torch.no_grad():
        for p in mem.parameters():                  # non-zero biases, so the per-position bias is tested
            p.add_(0.1 * torch.randn_like(p))
    hist = torch.randn(6, 3, 4, dom.obs_dim + 2, dtype=torch.float64)
    ours = mem(hist)
    ref = reference_memory(mem, hist)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    g_ours = torch.autograd.grad(ours.pow(2).sum(), list(mem.parameters()))
    g_ref = torch.autograd.grad(ref.pow(2).sum(), list(mem.parameters()))
    for (name, _), a, b in zip(mem.named_parameters(), g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")


def test_memory_names_a_history_of_the_wrong_shape():
    mem = nets.AgentMemory(4, 17, 10, 8)
    with pytest.raises(AssertionError, match=r"history must be \(B\.\.\., 4, 10, 17\), got \(2, 4, 10, 18\)"):
        mem(torch.randn(2, 4, 10, 18))
    assert mem(torch.randn(2, 3, 4, 10, 17)).shape == (2, 3, 4, 8)     # any leading batch dims


def test_memory_is_sensitive_to_history_order():
    dom = game.make_domain()
    agents, _ = _agents(dom, memory=True, memory_length=6)
    hist = torch.randn(4, 2, 6, 3)
    obs = torch.ones(4, 2, 1)
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    a, b = agents.encoder(obs, hist), agents.encoder(obs, hist[:, :, perm])
    assert torch.equal(a, agents.encoder(obs, hist))
    assert (a - b).abs().max() > 1e-4               # positional encoding breaks permutation invariance


# ---------------------------------------------------------------------------- learning: the game
def _final_eval(run):
    rows = [r for r in run.metrics() if "eval/score" in r]
    return rows[-1]["eval/score"]


@pytest.mark.parametrize("name", ["favorable", "neutral", "unfavorable"])
def test_game_agents_agree_with_ground_truth_simulator(name, tmp_path, device):
    ds = game_dataset(name, root=tmp_path)
    dom = game.make_domain()
    cfg = MomaPPOConfig(**{**SMALL, "mode": "simulator", "steps": 12, "lr": 1e-3, "eval_every": 12,
                           "eval_episodes": 20, "transitions_per_update": 1000})
    run = Run(f"game-{name}", cfg, seed=0, root=tmp_path)
    team = train(cfg, ds, dom, run, progress=False)
    assert _final_eval(run) == 1.0
    assert evaluate(team, dom, episodes=20).score == 1.0
    # the stochastic policies agree too, not just the greedy ones
    probs = team.policy.distribution(team.encoder(torch.ones(1, 2, 1, device=device))).probs[0]  # (agents, actions)
    assert probs.argmax(-1)[0] == probs.argmax(-1)[1] and probs.max(-1).values.min() > 0.8


def test_model_mode_without_world_model_says_how_to_get_one(tmp_path):
    cfg = MomaPPOConfig(**SMALL, steps=1)
    with pytest.raises(ValueError, match="load_or_fit"):
        train(cfg, game_dataset("neutral", root=tmp_path), game.make_domain(), Run("x", cfg, root=tmp_path),
              progress=False)


@pytest.mark.parametrize("name", ["favorable", "neutral", "unfavorable"])
def test_game_agents_agree_with_learned_world_model(name, tmp_path):
    from momawb.model_trainer import fit_world_model
    from momawb.world_model import WorldModelConfig
    ds = game_dataset(name, root=tmp_path)
    dom = game.make_domain()
    wm_fields = set(WorldModelConfig.keys())
    small = {"steps": 200, "hidden": (32, 32), "batch_size": 64, "eval_every": 100, "lr": 3e-3, "device": TEST_DEVICE,
             "log_every": 100, "checkpoint_every": 0}
    wm_cfg = WorldModelConfig(**{k: v for k, v in small.items() if k in wm_fields})
    wm = fit_world_model(ds, dom, wm_cfg, Run(f"wm-{name}", wm_cfg, root=tmp_path), progress=False)
    r = wm.step(torch.ones(4, 1), torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])[..., None]).rewards
    assert r[:2].min() > r[2:].max() + 0.5, r        # the model learned the payoff; PPO must find agreement
    cfg = MomaPPOConfig(**{**SMALL, "mode": "model", "steps": 12, "lr": 1e-3, "eval_every": 12,
                           "eval_episodes": 20, "transitions_per_update": 1000})
    run = Run(f"game-wm-{name}", cfg, seed=0, root=tmp_path)
    team = train(cfg, ds, dom, run, progress=False, world_model=wm)
    assert _final_eval(run) == 1.0
    assert evaluate(team, dom, episodes=20).score == 1.0


# ---------------------------------------------------------------------------- learning: online MAPPO
class ReachEnv(ParallelEnv):
    """Tiny continuous cooperative task: a target point in [-0.8, 0.8]^2 moves every step;
    agent i sees coordinate i and must output it; team reward -sum_i (a_i - x_i)^2."""

    metadata = {"name": "reach_v0"}

    def __init__(self, length=5):
        self.possible_agents, self.agents, self.length = ["agent_0", "agent_1"], [], length
        self.rng = np.random.default_rng()

    @functools.lru_cache(maxsize=None)
    def observation_space(self, agent):
        return spaces.Box(-1, 1, (1,), np.float32)

    @functools.lru_cache(maxsize=None)
    def action_space(self, agent):
        return spaces.Box(-1, 1, (1,), np.float32)

    def state(self):
        return self.x.copy()

    def reset(self, seed=None, options=None):
        self.rng = np.random.default_rng(seed)
        self.agents, self.t = list(self.possible_agents), 0
        self.x = self.rng.uniform(-0.8, 0.8, 2).astype(np.float32)
        return {a: self.x[i:i + 1] for i, a in enumerate(self.agents)}, {a: {} for a in self.agents}

    def step(self, actions):
        a = np.array([np.clip(actions[ag], -1, 1)[0] for ag in self.agents])
        r = -float(((a - self.x) ** 2).sum())
        self.t += 1
        self.x = self.rng.uniform(-0.8, 0.8, 2).astype(np.float32)
        done = self.t >= self.length
        ags = self.agents
        if done:
            self.agents = []
        return ({g: self.x[i:i + 1] for i, g in enumerate(ags)}, {g: r for g in ags}, {g: False for g in ags},
                {g: done for g in ags}, {g: {} for g in ags})


def reach_domain():
    return Domain("reach", "2-agents", 2, 2, np.array([[0], [1]]), 1, None, 5, (-2.2, 0.0),
                  env_factory=lambda seed=None, **kw: ReachEnv())


def test_online_mappo_improves_on_a_continuous_task(tmp_path, device):
    dom = reach_domain()
    cfg = MomaPPOConfig(**{**SMALL, "mode": "online", "steps": 12, "lr": 3e-3, "n_envs": 8,
                           "transitions_per_update": 400, "eval_every": 12, "eval_episodes": 30,
                           "entropy_target": -2.0})
    run = Run("reach", cfg, seed=0, root=tmp_path)
    before = evaluate(MomaPPO(dom, cfg, device).agents.team(), dom, episodes=30).returns.mean()
    team = train(cfg, None, dom, run, progress=False)
    after = evaluate(team, dom, episodes=30).returns.mean()
    rows = run.metrics()
    assert after > before + 0.5 and after > -1.0, (before, after)   # random-mean team: about -2.1
    assert rows[-1]["eval/return"] == pytest.approx(after, rel=0.3, abs=0.2)
    assert any("online/episode_return" in r for r in rows)
    for key in ("train/approx_kl", "train/clip_frac", "train/explained_variance", "train/alpha", "train/entropy"):
        assert key in rows[-1]


# ---------------------------------------------------------------------------- resume
def test_resume_gives_identical_parameters(tmp_path):
    ds = game_dataset("unfavorable", root=tmp_path)
    dom = game.make_domain()
    cfg = MomaPPOConfig(**{**SMALL, "mode": "simulator", "steps": 4, "lr": 1e-3, "memory": True,
                           "memory_length": 4, "transitions_per_update": 200, "checkpoint_every": 1,
                           "alpha_init": 0.05, "entropy_target": 1.0})

    def run_in(root):
        return Run("resume", cfg, seed=3, root=root)

    straight = train(cfg, ds, dom, run_in(tmp_path / "a"), progress=False)
    train(cfg.replace(steps=2), ds, dom, run_in(tmp_path / "b"), progress=False)   # "killed" after 2
    resumed = train(cfg, ds, dom, run_in(tmp_path / "b"), progress=False)          # a fresh process resumes
    assert_same_numbers(straight.state_dict(), resumed.state_dict(), "team")
    a = torch.load(run_in(tmp_path / "a").checkpoint_path, weights_only=False)["state"]
    b = torch.load(run_in(tmp_path / "b").checkpoint_path, weights_only=False)["state"]
    assert a["alpha"] > 0 and a["iterations"] == b["iterations"] == 4
    assert_same_numbers(a["alpha"], b["alpha"], "alpha")
    assert_same_numbers(a["opt"]["state"], b["opt"]["state"], "Adam state")
    ma, mb = run_in(tmp_path / "a").metrics(), run_in(tmp_path / "b").metrics()
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]  # noqa: E731
    assert_same_numbers(strip(ma), strip(mb), "metrics")


def test_config_section_and_defaults():
    c = cfgmod.load(cfgmod.section_class("moma_ppo"))
    assert isinstance(c, MomaPPOConfig)
    assert (c.lr, c.gamma, c.gae_lambda, c.clip, c.epochs, c.batch_size, c.horizon, c.n_rollouts) == \
        (5e-5, 0.99, 0.98, 0.2, 5, 256, 10, 200)
    assert MomaPPOConfig(l_eps="inf").l_eps == float("inf")
    with pytest.raises(cfgmod.ConfigError):
        MomaPPOConfig(mode="dyna")


class DriftModel:
    """A fake learned model for the continuous reach domain: s' = s + 0.1 a, r = -|s'|^2, eps_g grows."""

    def step(self, states, actions, generator=None):
        nxt = states + 0.1 * actions[..., 0]
        r = -nxt.pow(2).sum(-1)
        eps = nxt.abs().sum(-1)
        return StepOut(nxt, r, torch.ones_like(r, dtype=torch.bool), 0.1 * eps, eps, 0.5 * eps)


@pytest.mark.parametrize("penalty", ["epistemic", "aleatoric"])
def test_model_mode_continuous_with_memory_runs_and_logs(penalty, tmp_path):
    from momawb.datasets import Dataset
    dom = reach_domain()
    g = np.random.default_rng(0)
    s = g.uniform(-0.8, 0.8, (100, 2)).astype(np.float32)
    timeouts = np.zeros(100, bool)
    timeouts[4::5] = True
    ds = Dataset(s, g.uniform(-1, 1, (100, 2)), -np.ones(100), s, np.zeros(100, bool), timeouts)
    cfg = MomaPPOConfig(**{**SMALL, "mode": "model", "steps": 2, "memory": True, "memory_length": 3,
                           "transitions_per_update": 100, "l_eps": 1.0, "penalty": penalty, "eval_every": 2,
                           "eval_episodes": 2})
    run = Run("drift", cfg, root=tmp_path)
    team = train(cfg, ds, dom, run, progress=False, world_model=DriftModel())
    assert team.memory_length == 3
    row = run.metrics()[-1]
    assert 1 <= row["rollout/length"] < 10 and row["rollout/timeout_frac"] > 0 and row["rollout/penalty"] > 0
    assert "eval/score" in row and np.isfinite(row["train/action_penalty"])


# ---------------------------------------------------------------------------- opt-in stabilisers
STABILISERS = dict(obs_norm=True, value_norm=True, mixer_init_scale=0.1, critic_lr=1e-3, clip_per_group=True,
                   init_log_std=-1.0)


def test_running_norm_matches_moments_of_all_batches():
    from momawb.nets import RunningNorm
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, 2, 3, generator=g) * torch.tensor([1.0, 5.0, 0.1]) + 3 for n in (7, 50, 1, 200)]
    norm = RunningNorm((2, 3), clip=4.0)
    x = torch.ones(2, 3)
    assert torch.equal(norm(x), x)                                  # identity before any data
    for b in batches:
        norm.update(b)
    allx = torch.cat(batches).double()
    torch.testing.assert_close(norm.mean, allx.mean(0))
    torch.testing.assert_close(norm.var, allx.var(0, unbiased=False))
    y = norm(allx.float())
    assert y.abs().max() <= 4.0
    x = torch.full((2, 3), 3.05)                                    # within the clip range
    torch.testing.assert_close(norm.denormalize(norm(x)), x)


def test_running_norm_follows_its_buffers():
    """Its float32 moments are cached between updates: an update, a loaded state and a move
    must all show in the next forward pass."""
    from momawb.nets import RunningNorm
    norm, x = RunningNorm((3,)), torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.equal(norm(x), x)
    norm.update(torch.tensor([[0.0, 0.0, 0.0], [2.0, 4.0, 6.0]]))           # mean (1, 2, 3)
    assert torch.equal(norm(x), torch.zeros(1, 3))
    other = RunningNorm((3,))
    other.load_state_dict(norm.state_dict())
    assert torch.equal(other(x), torch.zeros(1, 3))
    norm.load_state_dict(RunningNorm((3,)).state_dict())                    # back to the identity
    assert torch.equal(norm(x), x)
    norm.update(torch.tensor([[3.0, 3.0, 3.0]]))                            # mean 3, var 0
    assert torch.equal(norm(x), (x - 3) / torch.tensor(1e-8, dtype=torch.float64).sqrt().float())
    moved = norm._apply(lambda t: t + 1)                                    # new buffers: mean 4, var 1
    torch.testing.assert_close(moved(x), x - 4)


@pytest.mark.parametrize("max_norm", [0.05, 1e3])               # clipping active, and a no-op scale of 1
def test_clip_grad_norm_is_torchs_bit_for_bit(max_norm):
    """`nets.clip_grad_norm_` against torch's on the same gradients: equal norms and gradients,
    parameters without a gradient left alone; mixed dtypes take torch's own path."""
    from momawb.nets import clip_grad_norm_

    def params(mixed: bool):
        torch.manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(*s)) for s in [(2, 8, 4), (2, 1, 4), (5,), (3, 3)]]
        if mixed:                                                       # one float64 parameter
            ps[1] = torch.nn.Parameter(ps[1].detach().double())
        for p, scale in zip(ps[:3], (1.0, 3.0, 0.01)):                 # the last one has no gradient
            p.grad = scale * torch.randn_like(p)
        return ps

    for mixed in (False, True):
        ours, theirs = params(mixed), params(mixed)
        got = clip_grad_norm_(iter(ours), max_norm)                      # a generator, as torch accepts
        want = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
        assert torch.equal(got, want) and got.dtype == want.dtype
        for a, b in zip(ours, theirs):
            assert (a.grad is None) == (b.grad is None)
            if a.grad is not None:
                assert torch.equal(a.grad, b.grad)
    assert float(got) > max_norm or max_norm == 1e3
    assert clip_grad_norm_([torch.nn.Parameter(torch.ones(2))], 1.0).item() == 0.0   # no gradients at all


def test_stabilisers_default_off_leave_networks_and_optimiser_as_before():
    dom = game.make_domain()
    cfg = MomaPPOConfig(**SMALL)
    assert (cfg.obs_norm, cfg.value_norm, cfg.mixer_init_scale, cfg.critic_lr, cfg.clip_per_group,
            cfg.init_log_std) == (False, False, 1.0, 0.0, False, 0.0)
    algo = MomaPPO(dom, cfg, torch.device("cpu"))
    assert not any("norm" in k for k in algo.agents.state_dict())
    assert len(algo.opt.param_groups) == 1 and algo.opt.param_groups[0]["lr"] == cfg.lr
    torch.manual_seed(0)
    plain = MomaPPOAgents(dom, cfg)
    torch.manual_seed(0)
    scaled = MomaPPOAgents(dom, cfg.replace(mixer_init_scale=0.1))
    torch.testing.assert_close(scaled.mixer.net[-1].weight, 0.1 * plain.mixer.net[-1].weight)
    torch.testing.assert_close(scaled.policy.net.net.layers[0].weight, plain.policy.net.net.layers[0].weight)
    dom_c = reach_domain()                                          # continuous: the log-std starts at -1
    team = MomaPPOAgents(dom_c, cfg.replace(init_log_std=-1.0)).team()
    bias = team.policy.net.net.layers[-1].bias                      # (N, 1, [mean, log-std])
    assert bias[..., 0].eq(0).all() and bias[..., 1].eq(-1.0).all()
    std = team.policy.distribution(team.encoder(torch.zeros(5, 2, 1))).stddev
    assert (std - math.exp(-1.0)).abs().max() < 0.2
    algo = MomaPPO(dom, cfg.replace(**STABILISERS, memory=True), torch.device("cpu"))
    lrs = [g["lr"] for g in algo.opt.param_groups]
    assert lrs == [cfg.lr, 1e-3, cfg.memory_lr]
    assert {id(p) for p in algo.opt.param_groups[1]["params"]} == {id(p) for p in algo.agents.critic_parameters()}


def test_obs_and_value_norm_track_rollouts_and_reach_the_team(tmp_path, device):
    dom = reach_domain()
    cfg = MomaPPOConfig(**{**SMALL, **STABILISERS, "mode": "online", "steps": 3, "lr": 1e-3, "n_envs": 4,
                           "transitions_per_update": 80, "eval_every": 3, "eval_episodes": 2})
    from momawb.moma_ppo import OnlineCollector
    algo = MomaPPO(dom, cfg, device)
    ro = OnlineCollector(dom, cfg, np.random.default_rng(0), device).collect(algo.agents)
    algo.update(ro, np.random.default_rng(1))
    states = ro.states.reshape(-1, 2)
    torch.testing.assert_close(algo.agents.state_norm.mean.float(), states.mean(0))
    torch.testing.assert_close(algo.agents.encoder.obs_norm.mean.float(), dom.observe(states).mean(0))
    assert algo.agents.value_norm.count == len(states)
    # the team carries the observation statistics; the value is standardised, `returns` undoes it
    assert "encoder.obs_norm.mean" in algo.agents.team().state_dict()
    x = algo.agents.encoder(dom.observe(states), None)
    v = algo.agents.value(x, states)
    vn = algo.agents.value_norm
    torch.testing.assert_close(algo.agents.returns(v), v * (vn.var + vn.eps).sqrt().float() + vn.mean.float())
    run = Run("stab", cfg, seed=0, root=tmp_path)
    train(cfg, None, dom, run, progress=False)
    row = run.metrics()[-1]
    assert np.isfinite(row["train/value_loss"]) and "eval/return" in row


def test_resume_with_stabilisers_is_bit_identical(tmp_path):
    """Bit-identical on CPU; on CUDA within floating-point tolerance (tests/devices.py)."""
    ds = game_dataset("unfavorable", root=tmp_path)
    dom = game.make_domain()
    cfg = MomaPPOConfig(**{**SMALL, **STABILISERS, "mode": "simulator", "steps": 4, "lr": 1e-3,
                           "transitions_per_update": 200, "checkpoint_every": 1})
    straight = train(cfg, ds, dom, Run("r", cfg, seed=1, root=tmp_path / "a"), progress=False)
    train(cfg.replace(steps=2), ds, dom, Run("r", cfg, seed=1, root=tmp_path / "b"), progress=False)
    resumed = train(cfg, ds, dom, Run("r", cfg, seed=1, root=tmp_path / "b"), progress=False)
    assert_same_numbers(straight.state_dict(), resumed.state_dict(), "team")


# ---------------------------------------------------------------------------- speed paths
@pytest.mark.parametrize("term_at", [None, 3.0])
def test_flatten_reuses_rollout_features_exactly(term_at):
    """The values, returns and advantages of `MomaPPO._flatten` from the encoder outputs the rollout
    kept (x(s') = the next step's x where the rollout went on) equal a full recomputation."""
    dom = game.make_domain()
    torch.manual_seed(0)
    algo = MomaPPO(dom, MomaPPOConfig(**{**SMALL, "horizon": 6, "l_eps": 5.0, "memory": True, "memory_length": 4,
                                         "obs_norm": True, "value_norm": True}), torch.device("cpu"))
    starts = {"states": torch.tensor([[0.0], [2.0], [4.0], [-3.0]]), "hist": torch.randn(4, 2, 4, 3),
              "qpos": None, "qvel": None}
    ro = model_rollouts(algo.agents, CounterEnv(term_at), dom, starts, algo.cfg)
    assert ro.features is not None and not ro.alive.all()
    reused = algo._flatten(ro)
    ro.features = None
    recomputed = algo._flatten(ro)
    for k in ("values", "returns", "adv"):
        torch.testing.assert_close(reused[k], recomputed[k], rtol=1e-5, atol=1e-6)


def test_bf16_and_fused_adam_train_close_to_fp32(tmp_path):
    """precision='bf16' (autocast on the memory encoder) and fused Adam are opt-in and recorded;
    two updates of a small memory run stay close to fp32's."""
    from momawb.datasets import Dataset
    dom = reach_domain()
    g = np.random.default_rng(0)
    s = g.uniform(-0.8, 0.8, (100, 2)).astype(np.float32)
    ds = Dataset(s, g.uniform(-1, 1, (100, 2)), -np.ones(100), s, np.zeros(100, bool), np.arange(100) % 5 == 4)
    losses = {}
    for name, kw in (("fp32", {}), ("bf16", {"precision": "bf16"}), ("fused", {"fused_adam": True})):
        cfg = MomaPPOConfig(**{**SMALL, "mode": "model", "steps": 2, "memory": True, "memory_length": 3,
                               "transitions_per_update": 100, "l_eps": 1.0, **kw})
        run = Run(f"speed-{name}", cfg, root=tmp_path)
        train(cfg, ds, dom, run, progress=False, world_model=DriftModel())
        losses[name] = run.metrics()[-1]["train/value_loss"]
        assert run.config["precision"] == kw.get("precision", "fp32")
    assert losses["fused"] == pytest.approx(losses["fp32"], rel=1e-4)
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.1)
