import os
import shutil
import tempfile

import pytest
import torch

from devices import ON_CUDA, TEST_DEVICE

os.environ.setdefault("MUJOCO_GL", "egl")
# the device switch: library code's device="auto" resolves to the test device (tests/devices.py)
os.environ["MOMAWB_DEVICE"] = TEST_DEVICE
if ON_CUDA and not torch.cuda.is_available():
    raise pytest.UsageError(f"MOMAWB_TEST_DEVICE={TEST_DEVICE} but torch.cuda.is_available() is False")
# the tests' networks are tiny: one thread is faster than two (launch-latency bound)
torch.set_num_threads(1)
# everything the tests (and the kernels nbval starts) write goes to a temporary folder, removed
# after a passing session and kept (its path printed) after a failing one
_CREATED_OUTPUTS = None
if "MOMAWB_OUTPUTS" not in os.environ:
    _CREATED_OUTPUTS = os.environ["MOMAWB_OUTPUTS"] = tempfile.mkdtemp(prefix="momawb-tests-")


def pytest_sessionfinish(session, exitstatus):
    if _CREATED_OUTPUTS is None:
        return
    if exitstatus == 0:
        shutil.rmtree(_CREATED_OUTPUTS, ignore_errors=True)
    else:
        print(f"\nthe tests' outputs are kept for inspection in {_CREATED_OUTPUTS}")


def pytest_configure(config):
    config.addinivalue_line("markers", "cpu_only(reason): meaningful only on the CPU; skipped under "
                                       "MOMAWB_TEST_DEVICE=cuda with the reason given")


def pytest_collection_modifyitems(config, items):
    if not ON_CUDA:
        return
    for item in items:
        mark = item.get_closest_marker("cpu_only")
        if mark is not None:
            item.add_marker(pytest.mark.skip(reason=f"CPU only: {mark.args[0] if mark.args else mark.kwargs}"))
        elif "ref" in item.path.parts and item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.skip(reason="CPU only: the nbval references hold the CPU's numbers, "
                                                    "bit for bit; CUDA kernels give other last digits"))


@pytest.fixture
def device() -> torch.device:
    """The device under test (MOMAWB_TEST_DEVICE, default cpu)."""
    return torch.device(TEST_DEVICE)


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """An outputs root inside the test's temporary folder."""
    root = tmp_path / "outputs"
    monkeypatch.setenv("MOMAWB_OUTPUTS", str(root))
    return root
