"""Model-free baselines (momawb.baselines): hand-checked losses, learning on fixed data, the
paper's Coordination Game outcomes (Table 3), a continuous coordination task, resume."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from momawb import train as train_mod
from momawb.baselines import bc, common, cql, iql, td3bc
from momawb.datasets import Dataset
from momawb.domains import Domain, game
from momawb.generate import game_dataset_config, generate_game
from momawb.runs import Run
from devices import assert_same_numbers

TINY = dict(hidden=(32, 32), batch_size=64, log_every=50, eval_every=0, checkpoint_every=10_000)
ALL = ["iql", "maiql", "maiql_ft", "ibc", "matd3bc", "itd3bc", "icql", "iomar"]
CONTINUOUS = ["matd3bc", "itd3bc", "icql", "iomar"]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny nets: threads only add contention on a shared machine
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------------- a continuous task
class SignsEnv:
    """Two agents, one action in [-1, 1] each; team reward 1 when the signs agree. T = 5 rounds."""

    possible_agents = ["agent_0", "agent_1"]

    def __init__(self, seed=None, **kw):
        self.agents, self.t = [], 0

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return {a: np.ones(1, np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def state(self):
        return np.ones(1, np.float32)

    def step(self, actions):
        a = [float(actions[ag][0]) for ag in self.agents]
        r = float(np.sign(a[0]) == np.sign(a[1]))
        self.t += 1
        done = self.t >= 5
        agents, self.agents = self.agents, ([] if done else self.agents)
        return ({g: np.ones(1, np.float32) for g in agents}, {g: r for g in agents},
                {g: False for g in agents}, {g: done for g in agents}, {g: {} for g in agents})

    def close(self):
        pass


def signs_domain() -> Domain:
    return Domain(name="signs", task="2-agents", n_agents=2, state_dim=1, obs_index=[[0], [0]], act_dim=1,
                  n_actions=None, episode_length=5, reference_returns=(2.5, 5.0), env_factory=SignsEnv)


def signs_dataset(episodes: int = 200, seed: int = 0, p_plus: float = 0.7) -> Dataset:
    """A mixture of conventions: p_plus of the episodes play +, the rest -, each agent deviates 25 %."""
    rng = np.random.default_rng(seed)
    conv = np.repeat(np.where(rng.random(episodes) < p_plus, 1.0, -1.0), 5)[:, None]
    flip = np.where(rng.random((len(conv), 2)) < 0.25, -1.0, 1.0)
    actions = (conv * flip * rng.uniform(0.2, 1.0, (len(conv), 2))).astype(np.float32)
    rewards = (np.sign(actions[:, 0]) == np.sign(actions[:, 1])).astype(np.float32)
    states = np.ones((len(conv), 1), np.float32)
    timeouts = np.zeros(len(conv), bool)
    timeouts[4::5] = True
    return Dataset(states, actions, rewards, states, np.zeros(len(conv), bool), timeouts, meta={"name": "signs"})


# ---------------------------------------------------------------------------- hand-checked losses
def test_expectile_loss_by_hand():
    diff = torch.tensor([1.0, -2.0])               # u = Q - V
    assert iql.expectile_loss(diff, 0.7).item() == pytest.approx((0.7 * 1 + 0.3 * 4) / 2)
    assert iql.expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * (1 + 4) / 2)


def test_maiql_awr_weights_equal_product_of_agent_weights_and_B():
    w_q, q = torch.tensor([[0.5, 2.0]]), torch.tensor([[1.0, -0.25]])
    w_v, v = torch.tensor([[1.0, 0.5]]), torch.tensor([[0.2, 0.4]])
    b_q, b_v, beta = torch.tensor([0.3]), torch.tensor([0.1]), 3.0
    adv = iql.mixed_advantage(w_q, q, b_q, w_v, v, b_v)
    assert adv.item() == pytest.approx((0.5 - 0.2) + (-0.5 - 0.2) + 0.2)
    by_hand = math.exp(3 * (0.5 - 0.2)) * math.exp(3 * (-0.5 - 0.2)) * math.exp(3 * (0.3 - 0.1))
    assert iql.awr_weights(adv, beta, 100.0).item() == pytest.approx(by_hand, rel=1e-6)
    assert iql.awr_weights(torch.tensor([10.0]), beta, 100.0).item() == 100.0      # clipped


def test_td3bc_cql_and_cem_by_hand():
    q = torch.tensor([[2.0, -4.0], [1.0, 2.0]])                # (B=2, N=2)
    lam = td3bc.bc_lambda(q, 2.5)
    assert torch.allclose(lam, torch.tensor([2.5 / 1.5, 2.5 / 3.0]))
    pi, a = torch.zeros(2, 2, 1), torch.ones(2, 2, 1)
    expected = -(lam * q).mean(0).sum() + 2.0                  # BC: 1 per agent, summed over 2 agents
    assert td3bc.td3bc_actor_loss(q, pi, a, 2.5).item() == pytest.approx(expected.item())
    assert td3bc.td3_target(torch.tensor([[1.0, 2.0]]), torch.tensor([1.0]), torch.tensor([1.0]), 0.9).tolist() \
        == [[1.0, 1.0]]
    q_data = torch.ones(1, 1, 1)
    q_sampled = torch.tensor([0.0, math.log(3.0)]).reshape(1, 2, 1, 1)
    assert cql.cql_penalty(q_data, q_sampled, 1.0, 1.0).item() == pytest.approx(math.log(4.0) - 1.0)
    torch.manual_seed(0)
    best, val = cql.cem_search(lambda x: -(x[..., 0] - 0.5) ** 2, (64, 1, 1), 2, 20, 5, 0.0, 2.0, 1.0)
    assert (best - 0.5).abs().mean() < 0.1 and val.shape == (64, 1)


def test_centralized_joint_action_roundtrip_and_team_shape():
    a = torch.tensor([[[0.0], [1.0]], [[1.0], [1.0]]])
    idx = common.joint_index(a, 2)
    assert idx.tolist() == [1, 3]
    assert torch.equal(common.split_joint_index(idx, 2, 2), a)
    algo = iql.build_iql(iql.IQLConfig(hidden=(8,)), game.make_domain(), central=True)
    assert algo.team().act(torch.ones(5, 2, 1)).shape == (5, 2, 1)


# ---------------------------------------------------------------------------- configs and errors
@pytest.mark.parametrize("method", ALL)
def test_configs_have_common_fields_and_paper_values(method):
    c = train_mod.method_config(method)
    for k in ("steps", "batch_size", "lr", "gamma", "tau", "hidden", "memory", "memory_length", "memory_lr",
              "eval_every", "eval_episodes", "log_every", "checkpoint_every", "device"):
        assert hasattr(c, k)
    assert (c.steps, c.batch_size, c.lr, c.gamma, c.tau, c.memory_lr) == (1_000_000, 256, 3e-4, 0.99, 0.005, 1e-4)
    if method.endswith("iql") or method == "maiql_ft":
        assert (c.expectile, c.beta) == (0.7, 3.0)
    if method in CONTINUOUS:
        assert (c.policy_delay, c.policy_noise, c.noise_clip) == (2, 0.2, 0.5)
    if method in ("icql", "iomar"):
        assert (c.cql_alpha, c.cql_temperature, c.cql_samples, c.cql_noise, c.bc_alpha) == (1.0, 1.0, 10, 0.2, 0.0)
    if method == "iomar":
        assert (c.omar_coeff, c.omar_iters, c.omar_mu, c.omar_sigma, c.omar_samples, c.omar_elites) == \
            (1.0, 2, 0.0, 2.0, 20, 5)
    if method in ("matd3bc", "itd3bc"):
        assert c.bc_alpha == 2.5


@pytest.mark.parametrize("method", CONTINUOUS)
def test_continuous_methods_refuse_discrete_domains(method, tmp_path):
    ds = generate_game(game_dataset_config("neutral", n_episodes=5))
    with pytest.raises(ValueError, match="continuous actions"):
        train_mod.train(method, ds, game.make_domain(), {"steps": 1, **TINY}, root=tmp_path, progress=False)


def test_centralized_iql_refuses_memory():
    with pytest.raises(ValueError, match="memory"):
        iql.build_iql(iql.IQLConfig(memory=True), game.make_domain(), central=True)


# ---------------------------------------------------------------------------- losses fall
def _algo(method, memory=False, device="cpu"):
    over = dict(hidden=(32, 32), gamma=0.0, memory=memory, memory_length=3)
    if method in ("iql", "maiql", "maiql_ft", "ibc"):
        domain, ds = game.make_domain(), generate_game(game_dataset_config("unfavorable", n_episodes=20))
        if method == "ibc":
            return bc.build_bc(bc.BCConfig(**over), domain, device), domain, ds, "train/bc_loss"
        algo = iql.build_iql(iql.MAIQLConfig(**over), domain, central=method == "iql", device=device)
        return algo, domain, ds, "train/q_loss"
    domain, ds = signs_domain(), signs_dataset(40)
    cls = {"matd3bc": td3bc.TD3BC, "itd3bc": td3bc.TD3BC, "icql": cql.CQL, "iomar": cql.OMAR}[method]
    cfg = {"matd3bc": td3bc.TD3BCConfig, "itd3bc": td3bc.TD3BCConfig, "icql": cql.CQLConfig,
           "iomar": cql.OMARConfig}[method](**over)
    # CQL's penalty floors at T log(3K) (equal Q on all proposals): watch its TD part
    key = "train/td_loss" if method in ("icql", "iomar") else "train/critic_loss"
    sampler = common.ReplaySampler(ds, domain, device, np.random.default_rng(0), memory, 3)
    return td3bc.build_td3(cfg, domain, method == "matd3bc", cls, device, sampler=sampler), domain, ds, key


@pytest.mark.parametrize("method,memory", [(m, False) for m in ALL] + [("maiql", True), ("itd3bc", True)])
def test_losses_fall_on_a_fixed_batch(method, memory, device):
    torch.manual_seed(0)
    algo, domain, ds, key = _algo(method, memory, device)
    batch = common.ReplaySampler(ds, domain, device, np.random.default_rng(0), memory, 3).sample(128)
    losses = [{k: float(v) for k, v in algo.update(batch).items()} for _ in range(80)]   # device tensors on CUDA
    assert all(math.isfinite(v) for m in losses for v in m.values())
    first, last = np.mean([m[key] for m in losses[:5]]), np.mean([m[key] for m in losses[-5:]])
    # the BC loss floors at the data's entropy (1.12 nats here), TD losses (gamma = 0) at ~0
    assert last < (0.9 if method == "ibc" else 0.7) * first, (method, first, last)


# ---------------------------------------------------------------------------- Table 3
def _game_score(method, name, tmp_path, steps=300, **over):
    ds = generate_game(game_dataset_config(name))
    res = train_mod.train(method, ds, game.make_domain(), {"steps": steps, **TINY, **over}, root=tmp_path,
                          eval_episodes=20, progress=False)
    return res.score


@pytest.mark.parametrize("name", ["favorable", "neutral", "unfavorable"])
def test_iql_coordinates_on_every_game_dataset(name, tmp_path):
    assert _game_score("iql", name, tmp_path) == 1.0


@pytest.mark.parametrize("name,expected", [("favorable", 1.0), ("unfavorable", 0.0)])
def test_ibc_copies_the_dataset_marginals(name, expected, tmp_path):
    assert _game_score("ibc", name, tmp_path) == expected


def test_maiql_fails_on_unfavorable_like_the_paper(tmp_path):
    # per-agent AWR averages the team weight over the partner's actions, which the dataset
    # mostly plays against the convention: agent 0 picks left, agent 1 right (Table 3: 0)
    assert _game_score("maiql", "unfavorable", tmp_path, steps=400) == 0.0


# ---------------------------------------------------------------------------- continuous task
@pytest.mark.parametrize("method", CONTINUOUS)
def test_continuous_methods_beat_random_on_signs(method, tmp_path):
    # 90 % of the data follow the + convention. At 70 % the independent learners without BC
    # (ICQL, IOMAR) sometimes settle on opposite signs: the coordination problem itself.
    res = train_mod.train(method, signs_dataset(p_plus=0.9), signs_domain(), {"steps": 400, **TINY},
                          root=tmp_path, eval_episodes=10, progress=False)
    assert res.score > 0.5                  # random = 0 (signs agree half the time), expert = 1


# ---------------------------------------------------------------------------- input normalisation
@pytest.mark.parametrize("obs_norm", [True, False])
def test_td3bc_obs_norm_makes_learning_invariant_to_input_units(obs_norm):
    """TD3+BC's recipe (dataset mean / std of observations and of the mixer's state): a dataset
    in other units (s * 50 + 7) trains the same team; without it, the teams differ."""
    rng = np.random.default_rng(0)
    n = 300
    s = rng.standard_normal((n, 3)).astype(np.float32)
    domain = Domain(name="units", task="2-agents", n_agents=2, state_dim=3, obs_index=[[0, 1], [1, 2]], act_dim=1,
                    n_actions=None, episode_length=10, reference_returns=(0.0, 1.0))
    actions, rewards = rng.uniform(-1, 1, (n, 2)).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    timeouts = np.arange(n) % 10 == 9

    def trained_actions(scale, shift):
        ds = Dataset(s * scale + shift, actions, rewards, np.roll(s, -1, 0) * scale + shift, np.zeros(n, bool), timeouts)
        torch.manual_seed(0)
        sampler = common.ReplaySampler(ds, domain, "cpu", np.random.default_rng(1))
        cfg = td3bc.TD3BCConfig(hidden=(16, 16), obs_norm=obs_norm)
        algo = td3bc.build_td3(cfg, domain, True, sampler=sampler)
        if obs_norm:
            torch.testing.assert_close(algo.encoder.obs_norm.mean.float(), sampler.obs.mean(0))
        for _ in range(20):
            algo.update(sampler.sample(64))
        return algo.team().act(torch.as_tensor(domain.observe(s[:50] * scale + shift)))

    same = torch.allclose(trained_actions(1.0, 0.0), trained_actions(50.0, 7.0), atol=1e-4)
    assert same == obs_norm


def test_td3bc_obs_norm_needs_the_data():
    with pytest.raises(ValueError, match="dataset statistics"):
        td3bc.build_td3(td3bc.TD3BCConfig(), signs_domain(), True)


# ---------------------------------------------------------------------------- resume
class Killed(Exception):
    pass


@pytest.mark.parametrize("method", ["maiql_ft", "iomar", "matd3bc"])
def test_resume_after_kill_matches_straight_run(method, tmp_path):
    if method == "maiql_ft":
        domain, ds = game.make_domain(), generate_game(game_dataset_config("neutral", n_episodes=30))
        over = {"steps": 20, "memory": True, "memory_length": 3}      # 20 offline + 20 fine-tuning
    else:
        domain, ds, over = signs_domain(), signs_dataset(40), {"steps": 40}
    cfg = train_mod.method_config(method, overrides={**TINY, **over, "checkpoint_every": 10, "eval_every": 20,
                                                     "eval_episodes": 2})
    fn = train_mod._function(method)

    def final_state(root, kill_at=None):
        run = Run(f"resume/{method}", cfg, seed=3, root=root)
        if kill_at is not None:
            save = run.save

            def save_then_die(state, step):
                save(state, step)
                if step == kill_at:
                    raise Killed
            run.save = save_then_die
            with pytest.raises(Killed):
                fn(cfg, ds, domain, run, progress=False)
            assert torch.load(run.checkpoint_path, weights_only=False)["step"] == kill_at
            run = Run(f"resume/{method}", cfg, seed=3, root=root)     # a fresh process, same folder
        team = fn(cfg, ds, domain, run, progress=False)
        return team.state_dict(), torch.load(run.checkpoint_path, weights_only=False), run.metrics()

    straight, resumed = final_state(tmp_path / "a"), final_state(tmp_path / "b", kill_at=20)
    assert_same_numbers(straight[0], resumed[0], "team")
    assert straight[1]["step"] == resumed[1]["step"]
    assert_same_numbers(straight[1]["state"]["opt"], resumed[1]["state"]["opt"], "optimisers")
    assert_same_numbers(straight[2], resumed[2], "metrics")
    if method == "maiql_ft":    # the buffer ends with as many online as offline transitions
        assert straight[2][-1]["train/online_transitions"] == len(ds)


@pytest.mark.parametrize("method", ["ibc", "maiql", "matd3bc"])
def test_memory_runs_end_to_end(method, tmp_path):
    """Histories from the dataset in training and from the env in evaluation (PAPER.md section 4)."""
    domain, ds = (signs_domain(), signs_dataset(40)) if method == "matd3bc" else \
        (game.make_domain(), generate_game(game_dataset_config("favorable", n_episodes=30)))
    res = train_mod.train(method, ds, domain, {**TINY, "steps": 30, "memory": True, "memory_length": 4,
                                               "eval_every": 15, "eval_episodes": 2}, root=tmp_path,
                          eval_episodes=2, progress=False)
    assert res.team.memory_length == 4 and [s for s, _ in res.curve] == [15, 30]


def test_iql_tanh_mean_bounds_the_policy_mean_only():
    """tanh_mean (IQL's authors' policy): the Gaussian's mean is tanh(mu), the distribution is not squashed."""
    torch.manual_seed(0)
    domain = signs_domain()
    x = 100 * torch.randn(64, 2, 1)
    for flag in (True, False):
        algo = iql.build_iql(iql.IQLConfig(hidden=(8,), tanh_mean=flag), domain, central=False)
        dist = algo.policy.distribution(x)
        assert (dist.mean.abs() <= 1).all() == flag
        assert torch.isfinite(algo.policy.log_prob(x, torch.full((64, 2, 1), 0.999))).all()


def test_iql_state_independent_std_is_one_learned_parameter():
    """state_dependent_std=False (the default: IQL's authors, d3rlpy): one log-std per agent and
    action dim, the same in every state, clamped to [-5, 2], trained by the AWR loss; True: from
    the net."""
    torch.manual_seed(0)
    domain = signs_domain()
    x = torch.randn(64, 2, 1)
    own = iql.build_iql(iql.IQLConfig(hidden=(8,)), domain, central=False).policy
    net = iql.build_iql(iql.IQLConfig(hidden=(8,), state_dependent_std=True), domain, central=False).policy
    assert own.log_std.shape == (2, 1) and net.log_std is None
    std = own.distribution(x).stddev
    assert torch.equal(std, std[:1].expand_as(std)) and not torch.equal(*net.distribution(x).stddev[:2])
    with torch.no_grad():
        own.log_std.fill_(9.0)
    assert torch.allclose(own.distribution(x).stddev, torch.tensor(2.0).exp())
    own.log_prob(x, torch.zeros(64, 2, 1)).sum().backward()
    assert own.log_std.grad is None or own.log_std.grad.abs().sum() == 0      # clamped: no gradient at 9
    with torch.no_grad():
        own.log_std.zero_()
    own.zero_grad()
    own.log_prob(x, torch.zeros(64, 2, 1)).sum().backward()
    assert own.log_std.grad.abs().sum() > 0
