"""The test suite's device switch (issue 13).

``MOMAWB_TEST_DEVICE=cuda pytest`` (or ``make test-gpu``) runs every device-dependent test on
CUDA: the library's ``device="auto"`` resolves to it (``$MOMAWB_DEVICE``, set in conftest.py) and
tests that build runs, networks or inputs themselves use `TEST_DEVICE`. The default is the CPU,
also on a GPU machine, so that CI's numbers and the nbval references stay bit-exact.

What holds on each device (README, "Device"): on CPU a seed fixes every number and a resumed run
ends bit-identical to an uninterrupted one. On CUDA a resumed run continues at the same step with
the same optimiser state and the same RNG streams (CPU and every CUDA generator), but reductions
that use atomics (the backward pass of indexing, ``index_add``, some cuBLAS/cuDNN kernels) are not
bit-reproducible, so trained weights agree to floating-point tolerance only: `assert_same_numbers`.
"""
from __future__ import annotations

import os

import torch

TEST_DEVICE = os.environ.get("MOMAWB_TEST_DEVICE", "cpu")
ON_CUDA = torch.device(TEST_DEVICE).type == "cuda"
#: relative / absolute tolerance of a CUDA run against a repeated or resumed one
CUDA_RTOL, CUDA_ATOL = 1e-3, 1e-4


def assert_same_numbers(a, b, what: str = "") -> None:
    """``a == b`` exactly on CPU; within `CUDA_RTOL`/`CUDA_ATOL` on CUDA (non-deterministic kernels).
    Works on tensors, floats and (nested) dicts/lists of them."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            assert_same_numbers(a[k], b[k], f"{what}/{k}")
        return
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_numbers(x, y, f"{what}[{i}]")
        return
    if not ON_CUDA:
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), what
        else:
            assert a == b, what
        return
    if isinstance(a, torch.Tensor) and not a.is_floating_point():
        assert torch.equal(a.cpu(), b.cpu()), what
    elif isinstance(a, (torch.Tensor, float)):
        torch.testing.assert_close(torch.as_tensor(a).cpu(), torch.as_tensor(b).cpu(), rtol=CUDA_RTOL,
                                   atol=CUDA_ATOL, msg=what)
    else:
        assert a == b, what
