"""momawb.precision: the default Adam (`flat_adam.FlatAdam`) is torch's Adam bit for bit, checkpoints
included."""
import io

import pytest
import torch
from torch import nn

from devices import TEST_DEVICE, assert_same_numbers
from momawb.flat_adam import FlatAdam

from momawb.nets import StackedMLP
from momawb.precision import adam


def _train(make_opt, steps: int = 50) -> list[torch.Tensor]:
    torch.manual_seed(0)
    net = StackedMLP(2, 6, 3, (16, 16))
    opt = make_opt(net.parameters())
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        loss = net(torch.randn(2, 32, 6, generator=g)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def test_default_adam_equals_the_per_tensor_loop():
    ours = _train(lambda ps: adam(ps, 1e-2))
    loop = _train(lambda ps: torch.optim.Adam(ps, lr=1e-2, foreach=False))
    assert all(torch.equal(a, b) for a, b in zip(ours, loop))
    fused = _train(lambda ps: adam(ps, 1e-2, fused=True))     # rounding-level, not bit-identical
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(ours, fused))


def _groups(net: nn.Sequential) -> list[dict]:
    """Two param groups at their own lr (as MOMA-PPO's policies / memory)."""
    return [{"params": [*net[0].parameters(), *net[2].parameters()]}, {"params": net[4].parameters(), "lr": 3e-3}]


def _net() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(7, 33), nn.ReLU(), nn.Linear(33, 33), nn.ReLU(), nn.Linear(33, 3)).to(TEST_DEVICE)


def _fit(net, opt, steps: int, first: int = 0, drop_bias_grad: bool = False) -> None:
    """Minibatch regression with gradient clipping; with ``drop_bias_grad`` the last bias has no
    gradient every third step (torch then leaves it, and its step count, alone)."""
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(500, 7, generator=g).to(TEST_DEVICE), torch.randn(500, 3, generator=g).to(TEST_DEVICE)
    for s in range(first, first + steps):
        idx = torch.randint(0, 500, (64,), generator=torch.Generator().manual_seed(s)).to(TEST_DEVICE)
        opt.zero_grad(set_to_none=True)
        (net(x[idx]) - y[idx]).pow(2).mean().backward()
        nn.utils.clip_grad_norm_(net.parameters(), 0.5)
        if drop_bias_grad and s % 3 == 0:
            net[4].bias.grad = None
        opt.step()


def _params(net) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def test_flat_adam_equals_torch_adam_with_groups_and_missing_gradients():
    ref, flat = _net(), _net()
    ref_opt, flat_opt = torch.optim.Adam(_groups(ref), lr=1e-2, foreach=True), FlatAdam(_groups(flat), lr=1e-2)
    _fit(ref, ref_opt, 100)
    _fit(flat, flat_opt, 100)
    assert_same_numbers(_params(ref), _params(flat), "plain steps")
    _fit(ref, ref_opt, 30, 100, drop_bias_grad=True)
    _fit(flat, flat_opt, 30, 100, drop_bias_grad=True)
    assert_same_numbers(_params(ref), _params(flat), "steps where one parameter has no gradient")
    assert not torch.equal(_params(flat)[0], _params(_net())[0])           # it did train


def test_flat_adam_checkpoints_are_torchs_both_ways():
    """A FlatAdam state resumes in torch's Adam and a torch Adam state resumes in FlatAdam; all
    three continuations end where the uninterrupted run does."""
    ref, flat = _net(), _net()
    ref_opt, flat_opt = torch.optim.Adam(_groups(ref), lr=1e-2, foreach=True), FlatAdam(_groups(flat), lr=1e-2)
    for net, opt in ((ref, ref_opt), (flat, flat_opt)):
        _fit(net, opt, 40, drop_bias_grad=True)
    buf = io.BytesIO()
    torch.save({"net": flat.state_dict(), "opt": flat_opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf)
    assert set(saved["opt"]["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}     # torch's layout
    to_torch = _net()
    to_torch.load_state_dict(saved["net"])
    to_torch_opt = torch.optim.Adam(_groups(to_torch), lr=1e-2, foreach=True)
    to_torch_opt.load_state_dict(saved["opt"])
    to_flat = _net()
    to_flat_opt = FlatAdam(_groups(to_flat), lr=1e-2)
    to_flat.load_state_dict(ref.state_dict())
    to_flat_opt.load_state_dict(ref_opt.state_dict())
    runs = [(ref, ref_opt), (flat, flat_opt), (to_torch, to_torch_opt), (to_flat, to_flat_opt)]
    for net, opt in runs:
        _fit(net, opt, 40, 40, drop_bias_grad=True)
    for net, _ in runs[1:]:
        assert_same_numbers(_params(ref), _params(net), "resumed")


def test_flat_adam_parameters_are_views_and_a_moved_module_is_an_error():
    net = _net()
    opt = FlatAdam(net.parameters(), lr=1e-2)
    before = _params(net)
    _fit(net, opt, 1)
    assert not torch.equal(before[0], _params(net)[0])                       # the module sees the step
    net.float()._apply(lambda t: t.clone())                                 # tensors replaced after the build
    with pytest.raises(RuntimeError, match="build the optimiser after moving the model"):
        _fit(net, opt, 1)


def test_flat_adam_keeps_autograds_inplace_check_and_its_state_through_deepcopy():
    import copy
    net = _net()
    opt = FlatAdam(net.parameters(), lr=1e-2)
    loss = net(torch.randn(4, 7, device=TEST_DEVICE)).sum()
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()                              # the graph saved the weights before the step
    _fit(net, opt, 5)
    twin_net, twin_opt = copy.deepcopy((net, opt))   # the moments travel with it (torch's layout)
    _fit(net, opt, 5, 5)
    _fit(twin_net, twin_opt, 5, 5)
    assert_same_numbers(_params(net), _params(twin_net), "deepcopied optimiser")


@pytest.mark.filterwarnings("ignore:optimizer contains a parameter group with duplicate parameters")
def test_flat_adam_refuses_what_it_does_not_compute():
    for options in ({"weight_decay": 0.1}, {"amsgrad": True}, {"maximize": True}):
        with pytest.raises(ValueError, match="FlatAdam computes plain Adam, without"):
            FlatAdam([{"params": _net().parameters(), **options}], lr=1e-2)
    net = _net()
    torch_state = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=0.1).state_dict()
    with pytest.raises(ValueError, match="weight_decay"):
        FlatAdam(net.parameters(), lr=1e-2).load_state_dict(torch_state)
    p = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="appears twice"):
        FlatAdam([{"params": [p, p]}], lr=1e-2)
