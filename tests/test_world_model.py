"""World-model ensemble (momawb/world_model.py): uncertainty maths, elites, clipping, resume,
bad inputs, learning on a deterministic linear system and on the Coordination Game."""
import numpy as np
import pytest
import torch

from momawb.config import ConfigError
from momawb.datasets import Dataset, DatasetError
from momawb.domains import Domain, SimStep, make
from momawb.generate import game_dataset_config, generate_game
from momawb.loop import TrainingDiverged
from momawb.runs import Run
from momawb import plots
from momawb.calibration import calibration
from momawb.model_trainer import EnsembleTrainer, _clip_member_grads, fit_world_model, load_or_fit
from momawb.world_model import WorldModel, WorldModelConfig, ensemble_uncertainty, majority_not_terminal
from devices import TEST_DEVICE, assert_same_numbers

TINY = dict(hidden=(64, 64), lr=2e-3, batch_size=64, eval_every=100, log_every=50, checkpoint_every=100,
            device=TEST_DEVICE)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The test machine is small and shared; one thread avoids oversubscription stalls."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------- toy linear system
A = np.array([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.7]], np.float32)
B = np.array([[0.5, 0.0], [0.0, 0.5], [0.3, -0.3]], np.float32)
C = np.array([1.0, -1.0, 0.5], np.float32)


def linear_domain() -> Domain:
    """3-d state, 2 agents with one continuous action each; s' = A s + B a, r = C.s + a0*a1."""
    return Domain(name="linear", task="toy", n_agents=2, state_dim=3, obs_index=np.array([[0, 1, 2], [0, 1, 2]]),
                  act_dim=1, n_actions=None, episode_length=20, reference_returns=(0.0, 1.0),
                  simulator_factory=lambda: LinearSim())


class LinearSim:
    def step(self, states, actions, qpos=None, qvel=None) -> SimStep:
        s, a = np.asarray(states, np.float32), np.asarray(actions, np.float32)[..., 0]
        return SimStep(s @ A.T + a @ B.T, s @ C + a[:, 0] * a[:, 1], s[:, 0] > 1e9)


def linear_dataset(n: int = 4000, seed: int = 0) -> Dataset:
    g = np.random.default_rng(seed)
    s = g.uniform(-1, 1, (n, 3)).astype(np.float32)
    a = g.uniform(-1, 1, (n, 2, 1)).astype(np.float32)
    out = LinearSim().step(s, a)
    timeouts = np.zeros(n, bool)
    timeouts[19::20] = True
    return Dataset(s, a.reshape(n, 2), out.rewards, out.next_states, out.terminals, timeouts, source="linear toy")


@pytest.fixture(scope="module")
def linear_model(tmp_path_factory):
    cfg = WorldModelConfig(**TINY, steps=1200)
    run = Run("wm-linear", cfg, seed=0, root=tmp_path_factory.mktemp("lin"))
    ds = linear_dataset()
    return fit_world_model(ds, linear_domain(), cfg, run, progress=False), ds, run


@pytest.fixture(scope="module")
def game_model(tmp_path_factory):
    ds = generate_game(game_dataset_config("neutral", n_episodes=100))
    cfg = WorldModelConfig(**TINY, steps=300)
    run = Run("wm-game", cfg, seed=0, root=tmp_path_factory.mktemp("game"))
    return fit_world_model(ds, make("game"), cfg, run, progress=False), ds, run


# ----------------------------------------------------------------------------- pure functions
def test_uncertainty_matches_naive_numpy():
    g = torch.Generator().manual_seed(0)
    nxt, rew = torch.randn(5, 11, 4, generator=g) * 3, torch.randn(5, 11, generator=g)
    eps_r, eps_g = ensemble_uncertainty(nxt, rew)
    x = np.concatenate([nxt.numpy(), rew.numpy()[..., None]], -1).astype(np.float64)
    for b in range(11):
        cov = np.cov(x[:, b, :], rowvar=False, ddof=1)                # (D, D) the naive way
        assert eps_g[b].item() == pytest.approx(np.linalg.norm(cov, "fro"), rel=1e-4)
        assert eps_r[b].item() == pytest.approx(np.var(x[:, b, -1], ddof=1), rel=1e-4)


def test_majority_vote():
    p = torch.tensor([[0.9, 0.9, 0.1, 0.6, 0.4],
                      [0.9, 0.2, 0.1, 0.6, 0.4],
                      [0.9, 0.9, 0.1, 0.1, 0.4],
                      [0.1, 0.2, 0.1, 0.6, 0.4],
                      [0.1, 0.2, 0.1, 0.1, 0.4]])                     # 5 elites x 5 samples
    assert majority_not_terminal(p).tolist() == [False, True, True, False, True]
    assert majority_not_terminal(torch.tensor([[0.9], [0.9], [0.1], [0.1]])).tolist() == [True]  # tie


def test_gradient_clipping_is_per_member():
    w, b = torch.nn.Parameter(torch.zeros(3, 2, 2)), torch.nn.Parameter(torch.zeros(3, 1, 2))
    w.grad = torch.tensor([3.0, 0.1, 30.0])[:, None, None] * torch.ones(3, 2, 2)
    b.grad = torch.zeros(3, 1, 2)
    norms = _clip_member_grads([w, b], 1.0)
    assert torch.allclose(norms, torch.tensor([6.0, 0.2, 60.0]))
    after = w.grad.flatten(1).norm(dim=1)
    assert torch.allclose(after, torch.tensor([1.0, 0.2, 1.0]), atol=1e-5)   # member 1 untouched


def test_config_rejects_impossible_values():
    with pytest.raises(ConfigError, match="n_elites"):
        WorldModelConfig(n_members=3, n_elites=5)
    with pytest.raises(ConfigError, match="lr"):
        WorldModelConfig(lr=0.0)
    assert WorldModelConfig().n_members == 7 and WorldModelConfig().hidden == (1024,) * 4


# ----------------------------------------------------------------------------- learning
def test_linear_system_error_small_and_eps_g_grows_outside(linear_model):
    model, ds, _ = linear_model
    cal = calibration(model, ds, k=3)
    one = cal["one_step"]
    assert one["state_error"].mean() < 0.03 * np.linalg.norm(ds.next_observations, axis=1).mean()
    far = torch.full((64, 3), 8.0)
    out_in = model.step(torch.as_tensor(ds.observations[:64]), torch.as_tensor(ds.actions[:64]).view(64, 2, 1))
    out_far = model.step(far, torch.zeros(64, 2, 1))
    assert out_far.eps_g.median() > 100 * out_in.eps_g.median()
    roll = cal["rollout"]
    assert roll["eps_g"].shape == roll["error"].shape == (len(roll["start"]), 3)
    fig = plots.calibration_figure(cal)                               # scatter + two rollout medians
    assert [len(t.x) for t in fig.data] == [min(len(one["eps_g"]), 3000), 3, 3]
    assert np.nanmean(roll["error"][:, 0]) < 0.1


def test_elites_are_lowest_validation_error(linear_model):
    model, ds, run = linear_model
    tr = EnsembleTrainer(ds, model.domain, model.config, run, torch.device(TEST_DEVICE))
    tr.ensemble.load_state_dict(model.ensemble.state_dict())
    score = tr.validation()["score"].numpy()
    assert sorted(model.elites) == sorted(np.argsort(score)[:5].tolist())
    assert np.allclose(score, model.val_scores, rtol=1e-5)
    assert run.read_json("world_model.json")["elites"] == model.elites
    rows = [r for r in run.metrics() if "eval/elite_m0" in r]
    assert rows and sum(rows[-1][f"eval/elite_m{m}"] for m in range(7)) == 5


def test_clipping_keeps_outputs_in_dataset_bounds(linear_model):
    model, ds, _ = linear_model
    g = torch.Generator().manual_seed(1)
    states = torch.randn(500, 3, generator=g) * 20
    acts = torch.randn(500, 2, 1, generator=g) * 20
    out = model.step(states, acts, generator=g)
    lo = np.minimum(ds.observations.min(0), ds.next_observations.min(0))
    hi = np.maximum(ds.observations.max(0), ds.next_observations.max(0))
    nxt = out.next_states.cpu().numpy()
    assert (nxt >= lo - 1e-6).all() and (nxt <= hi + 1e-6).all()
    assert out.rewards.min() >= ds.rewards.min() and out.rewards.max() <= ds.rewards.max()
    assert torch.isfinite(out.eps_g).all() and torch.isfinite(out.aleatoric).all()
    free = WorldModel(model.domain, model.config.replace(clip_state=False), model.ensemble, model.stats,
                      model.elites, model.val_scores, device=model.device)
    assert (free.step(states, acts).next_states.abs().cpu() > torch.as_tensor(hi)).any()   # the ablation switch


def test_step_shapes_generator_and_save_load(linear_model, tmp_path):
    model, ds, _ = linear_model
    s, a = torch.randn(7, 3), torch.randn(7, 2, 1)
    o1 = model.step(s, a, generator=torch.Generator().manual_seed(3))
    assert o1.next_states.shape == (7, 3) and o1.rewards.shape == o1.eps_g.shape == o1.not_terminal.shape == (7,)
    assert o1.not_terminal.dtype == torch.bool
    p = model.predict(s, a)                                           # eps come from the elites' raw means
    assert p["rewards"].shape == (5, 7) and torch.allclose(o1.rewards, p["rewards"].mean(0).clamp(
        float(ds.rewards.min()), float(ds.rewards.max())))
    assert torch.allclose(o1.eps_g, ensemble_uncertainty(p["next_states"], p["rewards"])[1])
    assert model.step(torch.zeros(0, 3), torch.zeros(0, 2, 1)).eps_g.shape == (0,)
    loaded = WorldModel.load(model.save(tmp_path / "wm.pt"), domain=linear_domain())
    o2 = loaded.step(s, a, generator=torch.Generator().manual_seed(3))
    for f in ("next_states", "rewards", "eps_r", "eps_g", "aleatoric", "not_terminal"):
        assert torch.equal(getattr(o1, f), getattr(o2, f)), f
    assert loaded.elites == model.elites and loaded.stats.keys() == model.stats.keys()
    with pytest.raises(ValueError, match=r"states must be \(B, 3\)"):
        model.step(torch.randn(4, 2), torch.randn(4, 2, 1))
    with pytest.raises(ValueError, match=r"n_agents=2, act_dim=1"):
        model.step(torch.randn(4, 3), torch.randn(4, 3, 1))


def test_game_model_predicts_payoff(game_model, tmp_path):
    model, ds, run = game_model
    acts = torch.tensor([[0, 0], [1, 1], [0, 1], [1, 0]], dtype=torch.float32)[..., None]
    out = model.step(torch.ones(4, 1), acts)
    assert torch.allclose(out.rewards.cpu(), torch.tensor([1.0, 1.0, 0.0, 0.0]), atol=0.1)
    assert out.not_terminal.all() and torch.allclose(out.next_states.cpu(), torch.ones(4, 1))
    again = load_or_fit(ds, make("game"), model.config, run)          # finished: loaded, not refit
    assert again.elites == model.elites
    cal = calibration(again, ds, k=2)                                 # the game's own simulator
    assert cal["rollout"]["error"].shape[1] == 2 and np.nanmax(cal["rollout"]["error"]) < 0.2


# ----------------------------------------------------------------------------- resume, divergence, bad inputs
def _params(model):
    return torch.cat([p.flatten() for p in model.ensemble.state_dict().values()])


def fit_killed_and_resumed(ds, dom, cfg, root, monkeypatch, at: int = 37):
    """Fit with seed 1 under ``root``, killed (KeyboardInterrupt) at step ``at``, then started
    again; returns (the resumed model, its run)."""
    original = EnsembleTrainer.update

    def crash(self, step):
        if step == at:
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(EnsembleTrainer, "update", crash)
    with pytest.raises(KeyboardInterrupt):
        fit_world_model(ds, dom, cfg, Run("wm", cfg, seed=1, root=root), progress=False)
    monkeypatch.setattr(EnsembleTrainer, "update", original)
    run = Run("wm", cfg, seed=1, root=root)
    return fit_world_model(ds, dom, cfg, run, progress=False), run


@pytest.mark.parametrize("sampling", ["host", "device"])
def test_resume_after_interrupt_matches_uninterrupted(sampling, tmp_path, monkeypatch):
    ds, dom = linear_dataset(600), linear_domain()
    cfg = WorldModelConfig(**{**TINY, "eval_every": 20, "checkpoint_every": 10}, steps=60, sampling=sampling)
    ref = fit_world_model(ds, dom, cfg, Run("wm", cfg, seed=1, root=tmp_path / "a"), progress=False)
    resumed, run_b = fit_killed_and_resumed(ds, dom, cfg, tmp_path / "b", monkeypatch)
    assert_same_numbers(_params(ref), _params(resumed))
    assert ref.elites == resumed.elites
    assert_same_numbers(ref.val_scores, resumed.val_scores)
    assert_same_numbers(run_b.metrics(), Run("wm", cfg, seed=1, root=tmp_path / "a").metrics())


def test_device_sampling_resumes_on_another_device_type(tmp_path):
    """A fit with sampling: device (the gpu presets) saved on a GPU resumes on a CPU (and back):
    CPU and CUDA generators are different algorithms, so a new stream seeded from the saved state
    takes over, with a warning; the same checkpoint always gives the same stream."""
    ds, dom = linear_dataset(300), linear_domain()
    cfg = WorldModelConfig(**{**TINY, "device": "cpu"}, sampling="device")
    tr = EnsembleTrainer(ds, dom, cfg, Run("wm", cfg, seed=1, root=tmp_path), torch.device("cpu"))
    state = tr.state_dict()
    assert state["generator_device"] == "cpu"
    state["generator"], state["generator_device"] = torch.arange(16, dtype=torch.uint8), "cuda"   # a CUDA state
    draws = []
    for _ in range(2):
        with pytest.warns(UserWarning, match="saved on cuda and resumes on cpu"):
            tr.load_state_dict(state)
        draws.append(torch.randint(0, 100, (5,), generator=tr.generator))
    assert torch.equal(*draws)


@pytest.mark.parametrize("sampling", ["host", "device"])
def test_nan_raises_and_keeps_last_checkpoint(sampling, tmp_path, monkeypatch):
    """With device sampling on an accelerator the metrics are read at log and checkpoint steps
    only (`loop.train_loop`): the NaN of step 14 is caught at step 19, before checkpoint 20."""
    ds, dom = linear_dataset(600), linear_domain()
    cfg = WorldModelConfig(**{**TINY, "checkpoint_every": 10}, steps=40, sampling=sampling)
    original = EnsembleTrainer.update

    def poison(self, step):
        if step == 14:
            with torch.no_grad():
                self.ensemble.net.layers[0].weight.fill_(float("nan"))
        return original(self, step)

    monkeypatch.setattr(EnsembleTrainer, "update", poison)
    run = Run("wm", cfg, seed=0, root=tmp_path)
    lazy = sampling == "device" and run.device.type != "cpu"
    with pytest.raises(TrainingDiverged, match=r"step 19 \(.*between steps 10 and 19\)" if lazy else r"step 14.*"
                       r"checkpoint.*intact"):
        fit_world_model(ds, dom, cfg, run, progress=False)
    state, step = run.load()
    assert step == 10 and all(torch.isfinite(v).all() for v in state["ensemble"].values())


def test_bad_inputs_raise_clear_errors(tmp_path):
    game_ds = generate_game(game_dataset_config("neutral", n_episodes=20))
    cfg = WorldModelConfig(**TINY, steps=5)
    with pytest.raises(DatasetError, match="expects 3 and 2"):
        fit_world_model(game_ds, linear_domain(), cfg, Run("wm", cfg, root=tmp_path), progress=False)
    bad = generate_game(game_dataset_config("neutral", n_episodes=20))
    bad.actions[3, 0] = 2.0
    with pytest.raises(DatasetError, match=r"integers in \[0, 2\)"):
        fit_world_model(bad, make("game"), cfg, Run("wm2", cfg, root=tmp_path), progress=False)
    with pytest.raises(DatasetError, match="empty"):
        Dataset(np.zeros((0, 3)), np.zeros((0, 2)), [], np.zeros((0, 3)), [], [])
    with pytest.raises(DatasetError, match="NaN"):
        Dataset(np.full((4, 3), np.nan), np.zeros((4, 2)), np.zeros(4), np.zeros((4, 3)), np.zeros(4), np.zeros(4))


def test_early_stopping_ends_training_and_stays_finished(tmp_path):
    ds, dom = linear_dataset(600), linear_domain()
    cfg = WorldModelConfig(**{**TINY, "eval_every": 10}, steps=200, patience=2, improvement=0.95)
    run = Run("wm", cfg, seed=0, root=tmp_path)
    model = fit_world_model(ds, dom, cfg, run, progress=False)
    assert model.meta["steps_done"] == 31                 # evals at 10 (best), 20, 30 (no 95 % drop)
    again = fit_world_model(ds, dom, cfg, Run("wm", cfg, seed=0, root=tmp_path), progress=False)
    assert torch.equal(_params(model), _params(again)) and again.meta["steps_done"] == 31   # loaded, not retrained


def test_bf16_and_fused_adam_keep_the_validation_nll(tmp_path):
    """precision='bf16' (autocast forward, fp32 losses and validation), fused Adam and device-side
    minibatch sampling are opt-in, recorded in the run's config, and fit the linear system as well
    as fp32 with host sampling does."""
    data, dom = linear_dataset(), linear_domain()
    nll = {}
    for name, kw in (("fp32", {}), ("bf16", {"precision": "bf16"}), ("fused", {"fused_adam": True}),
                     ("device", {"sampling": "device"})):
        cfg = WorldModelConfig(**{**TINY, "steps": 300, **kw})
        run = Run(f"wm-{name}", cfg, root=tmp_path)
        model = fit_world_model(data, dom, cfg, run, progress=False)
        nll[name] = [r for r in run.metrics() if "eval/val_nll" in r][-1]["eval/val_nll"]
        assert run.config["precision"] == cfg.precision
    assert nll["fused"] == pytest.approx(nll["fp32"], abs=0.05)
    assert nll["device"] == pytest.approx(nll["fp32"], abs=0.05) and nll["device"] != nll["fp32"]  # other draws
    assert nll["bf16"] == pytest.approx(nll["fp32"], abs=0.25)
    out = model.with_options(clip_state=False).step(torch.as_tensor(data.observations[:8]),
                                                     torch.as_tensor(data.actions[:8, :, None]))
    assert out.next_states.dtype == torch.float32 and torch.isfinite(out.eps_g).all()
