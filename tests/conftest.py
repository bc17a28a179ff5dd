import os

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """An outputs root inside the test's temporary folder."""
    root = tmp_path / "outputs"
    monkeypatch.setenv("MOMAWB_OUTPUTS", str(root))
    return root
