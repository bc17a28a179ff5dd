"""momawb.precision: the default (foreach) Adam is the per-tensor Adam bit for bit on CPU."""
import torch

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
