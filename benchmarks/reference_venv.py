"""The d3rlpy reference venv: build it once, run `d3rlpy_reference.py` in it (stdlib only).

d3rlpy 2.8.1 pins ``gymnasium==1.0.0`` and pulls the old ``gym``, so it cannot share momawb's
venv; it lives in its own venv and exchanges only files (an HDF5 dataset in, a TorchScript
policy and a JSON summary out) with momawb. This module is imported from momawb's venv:

    from benchmarks.reference_venv import ensure_reference_venv, run_reference
    py = ensure_reference_venv()                       # outputs/venvs/d3rlpy/bin/python
    res = run_reference(py, "data.hdf5", "td3bc", steps=1000, seed=0, out_dir="outputs/ref/td3bc")
    policy = torch.jit.load(res["policy"])             # (B, O) float32 -> (B, A) in [-1, 1]

`ensure_reference_venv` is idempotent: it creates the venv with ``python3 -m venv`` when missing,
pip installs ``torch==<TORCH_VERSION> d3rlpy==<D3RLPY_VERSION>`` (torch pinned exactly, else pip
may resolve a CUDA build; d3rlpy brings gym, gymnasium==1.0.0, h5py, scikit-learn, structlog...),
checks the imports, and only then writes a marker file. A failed install leaves no marker, so
the next call retries (pip skips what is already installed).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

__all__ = ["TORCH_VERSION", "D3RLPY_VERSION", "DEFAULT_VENV", "SCRIPT", "ensure_reference_venv",
           "run_reference"]

TORCH_VERSION = "2.13.0"
D3RLPY_VERSION = "2.8.1"
DEFAULT_VENV = "outputs/venvs/d3rlpy"
SCRIPT = Path(__file__).resolve().parent / "d3rlpy_reference.py"
_MARKER = ".momawb-reference-ok"


def _tail(text: str, n: int = 3000) -> str:
    return text if len(text) <= n else "..." + text[-n:]


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_reference_venv(path: str | os.PathLike = DEFAULT_VENV, *, base_python: str | None = None,
                          quiet: bool = True) -> Path:
    """The reference venv's python (absolute path); creates the venv and installs torch + d3rlpy when the marker
    file is missing. ``base_python`` (default: ``python3`` on PATH, else this interpreter) makes
    the venv. Raises RuntimeError with pip's output tail when the install fails."""
    venv = Path(os.path.abspath(path))                    # absolute, but bin/python's symlink kept
    py, marker = _python(venv), venv / _MARKER
    want = f"torch=={TORCH_VERSION} d3rlpy=={D3RLPY_VERSION}"
    if marker.is_file() and py.exists() and marker.read_text().startswith(want):
        return py
    marker.unlink(missing_ok=True)
    t0 = time.time()
    if not py.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        base = base_python or shutil.which("python3") or sys.executable
        r = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"creating the venv {venv} with {base} failed:\n{_tail(r.stderr + r.stdout)}")
    cmd = [str(py), "-m", "pip", "install", *(["-q"] if quiet else []),
           f"torch=={TORCH_VERSION}", f"d3rlpy=={D3RLPY_VERSION}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {r.returncode}):\n{_tail(r.stderr + r.stdout)}")
    check = ("import torch, d3rlpy, h5py, numpy; "
             "print(torch.__version__, d3rlpy.__version__)")
    r = subprocess.run([str(py), "-c", check], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"the reference venv {venv} does not import torch/d3rlpy:\n{_tail(r.stderr)}")
    torch_v, d3_v = r.stdout.split()
    if not torch_v.startswith(TORCH_VERSION) or d3_v != D3RLPY_VERSION:
        raise RuntimeError(f"the reference venv {venv} has torch {torch_v} and d3rlpy {d3_v}, expected "
                           f"torch {TORCH_VERSION} and d3rlpy {D3RLPY_VERSION}")
    marker.write_text(f"{want}\ntorch {torch_v}\ninstalled in {time.time() - t0:.0f} s\n")
    return py


def run_reference(python: str | os.PathLike, data: str | os.PathLike, algo: str, steps: int, seed: int = 0, *,
                  out_dir: str | os.PathLike, hidden: Sequence[int] = (256, 256), batch_size: int = 256,
                  lr: float = 3e-4, gamma: float = 0.99, tau: float = 0.005, obs_norm: bool | None = None,
                  log_every: int | None = None, threads: int | None = None, timeout: float | None = None,
                  extra_args: Sequence[str] = ()) -> dict:
    """Train ``algo`` (td3bc, iql, cql, bc) with d3rlpy on the D4RL-layout HDF5 ``data`` in a
    subprocess of the reference venv's ``python``; returns the script's JSON summary plus
    ``"policy"`` (path of the TorchScript policy) and ``"json"`` (path of the summary).
    ``threads`` sets torch's CPU threads in the child (1 is much faster than 2 on a busy 2-core
    machine); ``obs_norm`` None keeps the script's default (observation scaler for td3bc only),
    True/False forces it on/off; ``extra_args`` go to the script as they are (e.g.
    ``["--timeouts", "drop"]``). Raises RuntimeError with the stderr tail when the script fails
    or times out."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = Path(data).resolve()
    if not data.is_file():
        raise FileNotFoundError(f"no dataset at {data}")
    policy, summary = out / f"{algo}_seed{seed}_policy.pt", out / f"{algo}_seed{seed}.json"
    python = os.path.abspath(python)                      # not resolve(): that would leave the venv
    cmd = [python, str(SCRIPT), "--data", str(data), "--algo", algo, "--steps", str(int(steps)),
           "--seed", str(int(seed)), "--hidden", *map(str, hidden), "--batch-size", str(int(batch_size)),
           "--lr", repr(float(lr)), "--gamma", repr(float(gamma)), "--tau", repr(float(tau)),
           "--out-policy", str(policy), "--out-json", str(summary),
           *{None: [], True: ["--obs-norm"], False: ["--no-obs-norm"]}[obs_norm],
           *([] if log_every is None else ["--log-every", str(int(log_every))]),
           *([] if threads is None else ["--threads", str(int(threads))]), *extra_args]
    # cwd = out_dir: anything d3rlpy might write (with NoopAdapterFactory it writes nothing) lands there
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=str(out))
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise RuntimeError(f"d3rlpy reference {algo} timed out after {timeout} s:\n{_tail(err)}") from None
    if r.returncode != 0:
        raise RuntimeError(f"d3rlpy reference {algo} failed (exit {r.returncode}): {' '.join(cmd)}\n"
                           f"{_tail(r.stderr or r.stdout)}")
    try:
        result = json.loads(summary.read_text())
    except (OSError, ValueError) as e:
        raise RuntimeError(f"d3rlpy reference {algo} wrote no readable {summary}: {e}\n{_tail(r.stderr)}") from None
    result.update(policy=str(policy.resolve()), json=str(summary.resolve()))
    return result


if __name__ == "__main__":  # python benchmarks/reference_venv.py [VENV]: build (or check) the venv
    t = time.time()
    print(ensure_reference_venv(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_VENV, quiet=False))
    print(f"{time.time() - t:.1f} s", file=sys.stderr)
