"""One training step captured in a CUDA graph and replayed: the ``cuda_graph`` option of the world
model's and MOMA-PPO's configs (issue 19).

momawb's networks are small, so on a GPU a training step is a few hundred kernels of a few
microseconds each, and the time goes to launching them from Python, not to arithmetic. A CUDA
graph records the kernels of one step once and replays them in one launch (PyTorch's "whole
network capture": forward, backward, gradient clipping and a ``capturable`` Adam step; see
the CUDA semantics notes of the torch documentation, "CUDA Graphs").

`GraphedStep` wraps a step function ``fn(*tensors) -> tensor or tuple of tensors``:

* the first ``warmup`` calls of each input signature (shapes and dtypes) run eagerly on a side
  stream, as capture requires; they are real steps, like every replay;
* the next call captures one call (capture runs nothing), and it and every later call copy their
  inputs into the graph's static buffers and replay it; outputs are returned as fresh copies;
* at most ``max_graphs`` signatures are captured; other signatures run eagerly, as steps of the
  same function, so results do not depend on which ran as a graph beyond rounding. Both
  trainers keep one shape (MOMA-PPO pads its last, partial minibatch: `loop.padded_minibatch`)
  and capture one graph.

What the step function must respect (both trainers do): no host synchronisation (no ``.item()``,
no data-dependent Python branches); gradients reset with ``zero_grad(set_to_none=True)`` inside
the step; torch's fused Adam built with ``capturable=True`` (`precision.adam`); every tensor it
reads besides its inputs keeps its storage between calls (parameters, optimiser state and
normaliser buffers are updated in place), and nothing it computes is cached across calls on the
Python side (`capturing` tells bf16 autocast and `nets.RunningNorm` to skip their caches while a
graph is captured). Anything that replaces such a tensor (an optimiser's ``load_state_dict``)
must call `GraphedStep.reset`, after which the next calls warm up and capture again. The random
draws stay outside the graph (the minibatch indices are inputs). Measured on an H200: README,
"Speed on a GPU"; tests/test_cuda_graphs.py compares replayed and eager steps.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["GraphedStep", "capturing", "use_graphs"]


def capturing(device: torch.device | str) -> bool:
    """True while a CUDA graph is being captured on the current stream (``device`` on CUDA)."""
    return torch.device(device).type == "cuda" and torch.cuda.is_current_stream_capturing()


def use_graphs(cuda_graph: bool, device: torch.device | str) -> bool:
    """Whether a trainer replays its steps as graphs: ``cuda_graph`` set and ``device`` a CUDA
    device. On any other device the option is a no-op (eager steps, the same numbers), as
    ``precision: tf32`` is on CPU, so that a gpu-preset run also runs, and resumes, on a CPU."""
    return bool(cuda_graph) and torch.device(device).type == "cuda"


def _clone(out):
    return tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()


class GraphedStep:
    """``fn`` eagerly for ``warmup`` calls per input signature, then as a replayed CUDA graph.

    Call with the step's input tensors (all on one CUDA device); returns what ``fn`` returns
    (a tensor or a tuple of tensors), copied out of the graph's static outputs.
    """

    def __init__(self, fn: Callable, warmup: int = 3, max_graphs: int = 2):
        if warmup < 1:
            raise ValueError(f"GraphedStep: warmup must be >= 1 (capture needs eager calls first), got {warmup}")
        if max_graphs < 0:
            raise ValueError(f"GraphedStep: max_graphs must be >= 0, got {max_graphs}")
        self.fn, self.warmup, self.max_graphs = fn, warmup, max_graphs
        self.side: torch.cuda.Stream | None = None      # the warm-up and capture stream, on the inputs' GPU
        self.reset()

    def reset(self) -> None:
        """Forget every captured graph (after anything the step reads was replaced)."""
        self.graphs: dict[tuple, tuple] = {}
        self.calls: dict[tuple, int] = {}
        self.replays = 0

    def __call__(self, *inputs: torch.Tensor):
        if not inputs or not all(t.is_cuda for t in inputs):
            raise ValueError("GraphedStep replays CUDA graphs: its inputs must be CUDA tensors, got devices "
                             f"{[str(t.device) for t in inputs]} (trainers use it only on CUDA: use_graphs)")
        with torch.cuda.device(inputs[0].device):      # streams and graphs on the inputs' GPU (cuda:1 too)
            sig = tuple((tuple(t.shape), t.dtype) for t in inputs)
            entry = self.graphs.get(sig)
            if entry is None:
                seen = self.calls.get(sig, 0)
                if len(self.graphs) >= self.max_graphs:
                    return self.fn(*inputs)                       # not captured: eager, on this stream
                if self.side is None:
                    self.side = torch.cuda.Stream()
                if seen < self.warmup:
                    self.calls[sig] = seen + 1
                    return self._warm_up(inputs)
                entry = self.graphs[sig] = self._capture(inputs)
            graph, static_in, static_out = entry
            for buf, t in zip(static_in, inputs):
                buf.copy_(t)
            graph.replay()
            self.replays += 1
            return _clone(static_out)

    def _warm_up(self, inputs):
        """An eager call on the side stream, ordered after and before the current stream's work
        (capture wants the step's lazy initialisations done off the capturing stream)."""
        main = torch.cuda.current_stream()
        self.side.wait_stream(main)
        with torch.cuda.stream(self.side):
            out = self.fn(*inputs)
        main.wait_stream(self.side)
        return out

    def _capture(self, inputs):
        """Record one call of ``fn`` on copies of ``inputs`` (which become the static inputs); the
        side stream is on the inputs' device (torch's default capture stream is made once, on
        whichever device was current then)."""
        static_in = tuple(t.clone() for t in inputs)
        self.side.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.side):
            static_out = self.fn(*static_in)
        return graph, static_in, static_out
