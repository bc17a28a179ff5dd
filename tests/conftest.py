import os
import tempfile

import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")
# the tests' networks are tiny: one thread is faster than two (launch-latency bound)
torch.set_num_threads(1)
# everything the tests (and the kernels nbval starts) write goes to a temporary folder
os.environ.setdefault("MOMAWB_OUTPUTS", tempfile.mkdtemp(prefix="momawb-tests-"))


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """An outputs root inside the test's temporary folder."""
    root = tmp_path / "outputs"
    monkeypatch.setenv("MOMAWB_OUTPUTS", str(root))
    return root
