"""Networks shared by every algorithm.

Shape conventions (asserted at the boundaries):

* stacked networks work on ``(E, B, D)``: E independent members (ensemble members *or*
  agents), each with its own weights, computed in one batched matmul (``torch.baddbmm``);
* per-agent tensors are ``(B..., N, D)``; `AgentMLP` moves the agent axis in front, runs one
  stacked MLP and moves it back, so agents are never looped over in Python.

Pieces: `StackedLinear`, `StackedMLP` (ensemble members / agents), `AgentMLP`,
`AgentPolicy` (Gaussian with state-dependent std, or categorical), `AgentMemory` (the
attention memory of PAPER.md section 4, stacked over agents), `Mixer` (the QMIX-style
``sum_i w_i(s) V_i + b(s)`` of section 3), `soft_update`, `clip_grad_norm_`.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from momawb.cuda_graphs import capturing

__all__ = ["StackedLinear", "StackedMLP", "AgentMLP", "AgentPolicy", "AgentMemory", "AgentEncoder",
           "PolicyTeam", "Mixer",
           "mlp", "soft_update", "clip_grad_norm_", "positional_encoding", "ACTIVATIONS", "RunningNorm",
           "NormalizedEncoder"]

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "elu": nn.ELU}


def mlp(in_dim: int, out_dim: int, hidden: tuple[int, ...] = (256, 256), activation: str = "relu") -> nn.Sequential:
    """A plain MLP (for networks of the global state, e.g. the mixer)."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), ACTIVATIONS[activation]()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class StackedLinear(nn.Module):
    """E independent linear layers: ``(E, B, in) -> (E, B, out)`` in one ``baddbmm``.

    Each member is initialised like ``nn.Linear`` (uniform +-1/sqrt(in)).
    """

    def __init__(self, n: int, in_dim: int, out_dim: int, bias: bool = True):
        super().__init__()
        self.n, self.in_dim, self.out_dim = n, in_dim, out_dim
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 3 and x.shape[0] == self.n and x.shape[2] == self.in_dim, \
            f"StackedLinear expects ({self.n}, B, {self.in_dim}), got {tuple(x.shape)}"
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"n={self.n}, in={self.in_dim}, out={self.out_dim}, bias={self.bias is not None}"


class StackedMLP(nn.Module):
    """E MLPs with stacked weights: ``(E, B, in) -> (E, B, out)``."""

    def __init__(self, n: int, in_dim: int, out_dim: int, hidden: tuple[int, ...] = (256, 256),
                 activation: str = "relu"):
        super().__init__()
        dims = (in_dim, *hidden, out_dim)
        self.layers = nn.ModuleList(StackedLinear(n, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = ACTIVATIONS[activation]()
        self.n, self.in_dim, self.out_dim = n, in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


def _agents_first(x: torch.Tensor, n: int) -> tuple[torch.Tensor, tuple]:
    """(B..., N, D) -> (N, prod(B...), D) and the leading shape."""
    assert x.shape[-2] == n, f"expected {n} agents on axis -2, got shape {tuple(x.shape)}"
    lead = x.shape[:-2]
    return x.reshape(-1, n, x.shape[-1]).transpose(0, 1), lead


def _agents_back(y: torch.Tensor, lead: tuple) -> torch.Tensor:
    """(N, prod(B...), D) -> (B..., N, D)."""
    return y.transpose(0, 1).reshape(*lead, y.shape[0], y.shape[-1])


class AgentMLP(nn.Module):
    """One MLP per agent, stacked: ``(B..., N, in) -> (B..., N, out)``."""

    def __init__(self, n_agents: int, in_dim: int, out_dim: int, hidden: tuple[int, ...] = (256, 256),
                 activation: str = "relu"):
        super().__init__()
        self.n = n_agents
        self.net = StackedMLP(n_agents, in_dim, out_dim, hidden, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, lead = _agents_first(x, self.n)
        return _agents_back(self.net(y), lead)


class AgentPolicy(nn.Module):
    """Decentralised per-agent policies pi_i(a^i | x^i), stacked over agents.

    Continuous: Gaussian with state-dependent std (PAPER.md section 3), or with
    ``state_dependent_std=False`` one learned log-std per agent and action dim, initialised at 0
    (IQL's authors' policy); the log std is clamped to ``[log_std_min, log_std_max]``; with
    ``tanh`` its mean is tanh(mu) (bounded in [-1, 1], the distribution itself unsquashed: IQL's
    official policy), else mu. Discrete: categorical over
    ``n_actions``. Actions are ``(B..., N, act_dim)`` (discrete: the index as a float, act_dim 1).
    `log_prob` sums over action dims and returns ``(B..., N)``; a joint log-prob is its sum
    over agents.
    """

    def __init__(self, n_agents: int, in_dim: int, act_dim: int, n_actions: int | None = None,
                 hidden: tuple[int, ...] = (256, 256), log_std_min: float = -6.0, log_std_max: float = 0.0,
                 tanh: bool = False, state_dependent_std: bool = True):
        super().__init__()
        self.n, self.act_dim, self.n_actions, self.tanh = n_agents, act_dim, n_actions, tanh
        own_std = n_actions is None and not state_dependent_std
        out = n_actions if n_actions is not None else (1 if own_std else 2) * act_dim
        self.net = AgentMLP(n_agents, in_dim, out, hidden)
        self.log_std = nn.Parameter(torch.zeros(n_agents, act_dim)) if own_std else None
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        last = self.net.net.layers[-1]
        with torch.no_grad():  # small initial outputs: near-uniform / near-zero-mean start
            last.weight.mul_(0.1)
            last.bias.zero_()

    @property
    def discrete(self) -> bool:
        return self.n_actions is not None

    def distribution(self, x: torch.Tensor) -> torch.distributions.Distribution:
        out = self.net(x)
        if self.discrete:
            return torch.distributions.Categorical(logits=out, validate_args=False)
        mean, log_std = (out, self.log_std) if self.log_std is not None else out.split(self.act_dim, -1)
        if self.tanh:
            mean = torch.tanh(mean)
        log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        return torch.distributions.Normal(mean, log_std.exp().expand_as(mean), validate_args=False)

    def log_prob(self, x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        dist = self.distribution(x)
        if self.discrete:
            return dist.log_prob(actions[..., 0].long())
        return dist.log_prob(actions).sum(-1)

    def sample(self, x: torch.Tensor, greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions (B..., N, act_dim) and their log-probs (B..., N)."""
        dist = self.distribution(x)
        if self.discrete:
            a = dist.probs.argmax(-1) if greedy else dist.sample()
            return a.unsqueeze(-1).to(x.dtype), dist.log_prob(a)
        a = dist.mean if greedy else dist.sample()
        return a, dist.log_prob(a).sum(-1)

    def entropy(self, x: torch.Tensor) -> torch.Tensor:
        dist = self.distribution(x)
        return dist.entropy() if self.discrete else dist.entropy().sum(-1)


def positional_encoding(length: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal positional encodings, (length, dim) (Vaswani et al. 2017)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return pe


class AgentMemory(nn.Module):
    """Attention memory over the last L (o, a) pairs, one per agent (PAPER.md section 4).

    ``(B..., N, L, F) -> (B..., N, e_h)``: linear embedding to e_h + positional encoding; one
    layer of single-head scaled dot-product self-attention with a skip connection and layer
    norm; soft-attention pooling (a bias-free tanh "soft-key" layer scored against learned,
    normally-initialised soft-queries, softmax over the L steps). Padded steps are zero rows,
    as in the paper (no mask). All agents run in the same batched matmuls.

    Computed without forming q, k and v. The embedding is affine in the (o, a) pair x_l and the
    step l, so with the augmented row ``x~_l = [x_l, onehot(l)]`` (F + L wide; F = |o| + |a|) it
    is ``z_l = x~_l W_z``, ``W_z = [W_e; b_e + pos]``, and each projection is ``x~_l W~`` with
    ``W~ = W_z W + [0; 1 b]`` ((F + L) x e). Then the attention logits are
    ``q_l . k_m = x~_l (W~_q W~_k^T) x~_m^T``, an (F + L) x (F + L) bilinear form, and the skip
    connection plus the attended values is ``z + att v = [x~, att x~] [W_z; W~_v]``, one product
    of 2 (F + L) inputs (partially observed Ant: 27 and 54 against e_h = 128; cheaper while
    F + L is well under e_h, as in every momawb domain). The layer norm's per-agent gain g and
    bias beta are applied where they act on less: the soft keys are ``tanh(u (g W_k) + beta W_k)``
    and, the pooling weights summing to 1, the pooled output is ``(sum_l p_l u_l) g + beta`` (u:
    the normalised rows). The same function and parameters as the layer-by-layer computation,
    other rounding (tested in float64); the (B, L, e) activations formed are the layer norm's
    input and output, the soft keys before and after the tanh, and the pooling product.
    """

    def __init__(self, n_agents: int, feature_dim: int, length: int = 10, embed_dim: int = 128):
        super().__init__()
        self.n, self.length, self.e = n_agents, length, embed_dim
        self.embed = StackedLinear(n_agents, feature_dim, embed_dim)
        self.qkv = StackedLinear(n_agents, embed_dim, 3 * embed_dim)
        self.norm_gain = nn.Parameter(torch.ones(n_agents, 1, 1, embed_dim))
        self.norm_bias = nn.Parameter(torch.zeros(n_agents, 1, 1, embed_dim))
        self.soft_key = StackedLinear(n_agents, embed_dim, embed_dim, bias=False)
        self.soft_query = nn.Parameter(torch.randn(n_agents, embed_dim, 1) / math.sqrt(embed_dim))
        self.register_buffer("pos", positional_encoding(length, embed_dim), persistent=False)

    def forward(self, hist: torch.Tensor) -> torch.Tensor:
        assert hist.shape[-3:] == (self.n, self.length, self.embed.in_dim), \
            f"history must be (B..., {self.n}, {self.length}, {self.embed.in_dim}), got {tuple(hist.shape)}"
        lead, e, length, feat = hist.shape[:-3], self.e, self.length, hist.shape[-1]
        x = hist.reshape(-1, self.n, length, feat).transpose(0, 1)                  # (N, B, L, F)
        nb, b = x.shape[0], x.shape[1]
        steps = torch.eye(length, dtype=x.dtype, device=x.device).expand(nb, b, length, length)
        xs = torch.cat([x, steps], -1).reshape(nb * b, length, feat + length)       # x~: (N*B, L, F+L)
        w_z = torch.cat([self.embed.weight, self.embed.bias + self.pos], 1)          # (N, F+L, e)
        w_qkv = torch.bmm(w_z, self.qkv.weight) + F.pad(self.qkv.bias.expand(-1, length, -1), (0, 0, feat, 0))
        w_q, w_k, w_v = w_qkv.split(e, -1)                                            # 3 x (N, F+L, e)
        logit_form = torch.bmm(w_q, w_k.transpose(1, 2)) / math.sqrt(e)              # (N, F+L, F+L)
        rows = xs.reshape(nb, b * length, -1)                                         # (N, B*L, F+L)
        logits = torch.bmm(torch.bmm(rows, logit_form).reshape(nb * b, length, -1), xs.transpose(1, 2))
        att = torch.softmax(logits, -1)                                               # (N*B, L, L)
        mixed = torch.cat([rows, torch.bmm(att, xs).reshape(nb, b * length, -1)], -1)  # [x~, att x~]
        u = F.layer_norm(torch.bmm(mixed, torch.cat([w_z, w_v], 1)), (e,))          # (N, B*L, e)
        gain, bias = self.norm_gain[:, 0], self.norm_bias[:, 0]                      # (N, 1, e)
        key_weight = gain.transpose(1, 2) * self.soft_key.weight                     # (N, e, e)
        keys = torch.tanh(torch.baddbmm(bias @ self.soft_key.weight, u, key_weight))  # (N, B*L, e)
        scores = torch.bmm(keys, self.soft_query).reshape(nb, b, length)             # (N, B, L)
        pooled = (torch.softmax(scores, -1).unsqueeze(-1) * u.reshape(nb, b, length, e)).sum(-2) * gain + bias
        return pooled.transpose(0, 1).reshape(*lead, self.n, e)                      # (B..., N, e)


class AgentEncoder(nn.Module):
    """Each agent's network input x^i: its current observation, plus (under partial
    observability) the 128-d memory embedding of its history (PAPER.md section 4).

    ``forward(obs (B..., N, O), hist (B..., N, L, F) or None) -> (B..., N, out_dim)``.
    """

    def __init__(self, n_agents: int, obs_dim: int, feature_dim: int, memory: bool = False,
                 length: int = 10, embed_dim: int = 128):
        super().__init__()
        self.memory = AgentMemory(n_agents, feature_dim, length, embed_dim) if memory else None
        self.length = length if memory else 0
        self.out_dim = obs_dim + (embed_dim if memory else 0)

    def forward(self, obs: torch.Tensor, hist: torch.Tensor | None = None) -> torch.Tensor:
        if self.memory is None:
            return obs
        if hist is None:
            raise ValueError("this encoder has a memory: pass the agents' histories (B..., N, L, F)")
        return torch.cat([self.memory(hist), obs], -1)


class PolicyTeam(nn.Module):
    """A decentralised team (``momawb.evaluation.Team``): encoder + per-agent policies."""

    def __init__(self, encoder: AgentEncoder, policy: AgentPolicy):
        super().__init__()
        self.encoder, self.policy = encoder, policy

    @property
    def memory_length(self) -> int:
        return self.encoder.length

    @torch.no_grad()
    def act(self, obs: torch.Tensor, history: torch.Tensor | None = None, greedy: bool = True) -> torch.Tensor:
        return self.policy.sample(self.encoder(obs, history), greedy=greedy)[0]


class Mixer(nn.Module):
    """QMIX-style mixing: ``V(s) = sum_i w_i(s) V_i + b(s)`` (PAPER.md section 3).

    ``w`` and ``b`` come from one MLP of the global state (and, for Q mixers, of the joint
    action via ``extra_dim``). Like the paper's code the weights are unconstrained (a linear,
    state-conditioned, non-monotonic mix); ``monotonic=True`` takes |w| as in QMIX.
    """

    def __init__(self, state_dim: int, n_agents: int, hidden: tuple[int, ...] = (256, 256),
                 monotonic: bool = False, extra_dim: int = 0):
        super().__init__()
        self.n, self.monotonic = n_agents, monotonic
        self.net = mlp(state_dim + extra_dim, n_agents + 1, hidden)

    def weights(self, state: torch.Tensor, extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``w`` (B..., N) and ``b`` (B...,)."""
        inp = state if extra is None else torch.cat([state, extra], -1)
        out = self.net(inp)
        w, b = out[..., : self.n], out[..., self.n]
        return (w.abs() if self.monotonic else w), b

    def forward(self, values: torch.Tensor, state: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Mix per-agent values (B..., N) into the team value (B...,)."""
        w, b = self.weights(state, extra)
        return (w * values).sum(-1) + b


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging: target <- (1 - tau) target + tau source (``lerp_``, one call for all
    parameters: the same kernel per tensor, so the same numbers as a loop)."""
    targets = list(target.parameters())
    if targets:
        torch._foreach_lerp_(targets, list(source.parameters()), tau)


@torch.no_grad()
def clip_grad_norm_(parameters, max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (L2, no error on a non-finite norm), bit for bit: the
    same per-tensor norms, their norm, and the same scale ``min(max_norm / (norm + 1e-6), 1)``
    on every gradient. Without torch's per-call grouping by device and dtype (about a third of its
    cost on MOMA-PPO's small networks), which it still uses when the gradients are not all of one
    device and dtype. Returns the total norm, a 0-d tensor on the gradients' device."""
    params = [p for p in parameters if p.grad is not None]
    grads = [p.grad for p in params]
    if not grads or len({(g.device, g.dtype) for g in grads}) > 1 or grads[0].is_sparse:
        return nn.utils.clip_grad_norm_(params, max_norm)
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    torch._foreach_mul_(grads, torch.clamp(float(max_norm) / (total + 1e-6), max=1.0))
    return total


class RunningNorm(nn.Module):
    """Running mean and variance over all samples seen (batched update of Chan et al.), per feature
    of ``shape``; ``forward`` standardises (clipped to +-clip), ``denormalize`` inverts it.
    Buffers, so they live in checkpoints; starts as the identity (mean 0, var 1)."""

    def __init__(self, shape: tuple[int, ...], clip: float = float("inf"), eps: float = 1e-8):
        super().__init__()
        self.shape, self.clip, self.eps = tuple(shape), clip, eps
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge a batch x (M, *shape) into the running moments."""
        x = x.reshape(-1, *self.shape).double()
        n = x.shape[0]
        if n == 0:
            return
        mean, var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = mean - self.mean
        self.var.copy_((self.var * self.count + var * n + delta.pow(2) * self.count * n / total) / total)
        self.mean.add_(delta * n / total)
        self.count.copy_(total)

    def _moments(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, sqrt(var + eps)) cast to ``dtype``. Cached: recomputed only when the buffers
        changed (`update` and ``load_state_dict`` write them in place, which bumps their version;
        ``.to()`` replaces them), so a forward pass costs three operations, not seven. Writes
        through ``.data`` bypass the version counter: use in-place ops or ``load_state_dict``."""
        if torch.is_inference_mode_enabled() or self.mean.is_inference():   # no version counters there
            return self._compute_moments(dtype)
        if capturing(self.mean.device):
            return self._compute_moments(dtype)     # a CUDA graph reads the buffers at each replay
        key = (dtype, self.eps, self.mean._version, self.var._version, self.mean.data_ptr(), self.var.data_ptr())
        src = getattr(self, "_cache_src", None)     # the buffers themselves: a new buffer is a new key
        if src is None or src[0] is not self.mean or src[1] is not self.var or self._cache_key != key:
            self._cache = self._compute_moments(dtype)
            self._cache_src, self._cache_key = (self.mean, self.var), key
        return self._cache

    def _compute_moments(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean.to(dtype), (self.var + self.eps).sqrt().to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._moments(x.dtype)
        y = (x - mean) / std
        return y if math.isinf(self.clip) else y.clamp(-self.clip, self.clip)

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        mean, std = self._moments(y.dtype)
        return y * std + mean


class NormalizedEncoder(AgentEncoder):
    """`nets.AgentEncoder` on observations standardised by a `RunningNorm` of shape (N, O)
    (``obs_norm``); histories stay raw. Part of the team, so evaluation sees the same inputs."""

    def __init__(self, n_agents: int, obs_dim: int, *args, clip: float = 10.0, eps: float = 1e-8, **kw):
        super().__init__(n_agents, obs_dim, *args, **kw)
        self.obs_norm = RunningNorm((n_agents, obs_dim), clip, eps)

    def forward(self, obs: torch.Tensor, hist: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(self.obs_norm(obs), hist)
