"""A tiny trainer on loop.train_loop, used by the kill-and-resume tests (importable by a
subprocess). Minibatches come from the run's numpy Generator and the net uses dropout, so both
RNG streams matter for an exact resume. It runs on the run's device (the test device: CUDA under
MOMAWB_TEST_DEVICE=cuda, where dropout draws from the CUDA generator)."""
from __future__ import annotations

import os
import signal
import sys

import numpy as np
import torch

from momawb.loop import train_loop
from momawb.runs import Run


class Toy:
    def __init__(self, run: Run, kill_at: int | None = None):
        self.run, self.kill_at = run, kill_at
        g = np.random.default_rng(123)
        dev = run.device
        self.x = torch.as_tensor(g.normal(size=(512, 4)), dtype=torch.float32, device=dev)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0], device=dev) + 0.1
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                       torch.nn.Linear(32, 1)).to(dev)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-2)
        self.updates = 0

    def update(self, step: int) -> dict:
        if self.kill_at is not None and step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        idx = torch.as_tensor(self.run.np_rng.integers(0, len(self.x), 32), device=self.x.device)
        loss = ((self.net(self.x[idx]).squeeze(-1) - self.y[idx]) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.updates += 1
        return {"loss": loss.item()}

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "updates": self.updates}

    def load_state_dict(self, s: dict) -> None:
        self.net.load_state_dict(s["net"])
        self.opt.load_state_dict(s["opt"])
        self.updates = s["updates"]


def train(root: str, n_steps: int = 40, kill_at: int | None = None, checkpoint_every: int = 7,
          log_every: int = 5, ready=None) -> Toy:
    """Train (resuming), then write result.json once, like `momawb.train.train` does."""
    run = Run("toy", {"lr": 1e-2}, seed=3, root=root)     # the default device: the test device
    toy = Toy(run, kill_at)
    if ready is not None:
        ready()
    train_loop(run, toy, n_steps, toy.update, log_every=log_every, checkpoint_every=checkpoint_every,
               progress=False)
    if run.read_json("result.json") is None:
        run.write_json("result.json", {"updates": toy.updates,
                                       "params": [float(p.detach().sum()) for p in toy.net.parameters()]})
    return toy


if __name__ == "__main__":
    # toy_trainer.py ROOT KILL_AT                         killed by itself at step KILL_AT
    # toy_trainer.py ROOT -1 N_STEPS LOG_EVERY CKPT_EVERY  prints "ready" once training starts
    args = [int(a) for a in sys.argv[2:]]
    if args[0] >= 0:
        train(sys.argv[1], kill_at=args[0])
    else:
        train(sys.argv[1], n_steps=args[1], log_every=args[2], checkpoint_every=args[3],
              ready=lambda: print("ready", flush=True))
