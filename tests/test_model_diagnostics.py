"""World-model diagnostics for the ablations: rollouts with and without the bounding-box clip."""
import numpy as np
import torch

from momawb.calibration import rollout_state_norms
from momawb.runs import Run
from momawb.model_trainer import fit_world_model
from momawb.world_model import WorldModelConfig
from devices import TEST_DEVICE
from test_world_model import linear_dataset, linear_domain


class Push:
    """Both agents push with +1: the linear system's state grows out of the data's range."""

    memory_length = 0

    def act(self, obs, history=None, greedy=True):
        return torch.full((obs.shape[0], obs.shape[1], 1), 1.0, device=obs.device)


def test_clip_keeps_rollouts_in_the_datasets_range(tmp_path):
    ds, dom = linear_dataset(1000), linear_domain()
    cfg = WorldModelConfig(hidden=(64, 64), lr=2e-3, batch_size=64, steps=300, eval_every=100, log_every=100,
                           checkpoint_every=0, device=TEST_DEVICE)
    model = fit_world_model(ds, dom, cfg, Run("wm", cfg, root=tmp_path), progress=False)
    open_loop = rollout_state_norms(model, ds, k=5, n_rollouts=64)
    assert open_loop["clipped"].shape == open_loop["unclipped"].shape == (64, 5)
    pushed = rollout_state_norms(model, ds, k=10, n_rollouts=64, team=Push())
    box = np.linalg.norm(np.maximum(np.abs(ds.observations).max(0), np.abs(ds.next_observations).max(0)))
    assert pushed["clipped"].max() <= box + 1e-4                       # inside the bounding box
    assert pushed["unclipped"][:, -1].mean() > pushed["clipped"][:, -1].mean()   # drifts out without it
    assert pushed["dataset"]["max"] >= pushed["dataset"]["p99"] >= pushed["dataset"]["p50"] > 0
