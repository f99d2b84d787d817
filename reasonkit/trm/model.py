"""The Tiny Recursive Model (Jolicoeur-Martineau 2025) as a plain PyTorch module.

Glossary: B examples, L positions (puzzle cells), D hidden size, V vocabulary (cell tokens).

One supervision step, as ``TRM.forward`` runs it (x embedded, y the answer state, z the latent state):

    for t in 1..T:                      # the first T-1 recursions without gradients
        for i in 1..n:  z <- f(x + y + z)     # latent update
        y <- f(y + z)                         # answer update
    logits = head(y), halt logit = q_head(mean over positions of y)
    return y, z detached                      # carried to the next supervision step

The inputs of f are *added*, as in the reference implementation (the paper's text writes a
concatenation): addition keeps one network, of one width, for both updates, and f tells the two roles
apart by whether x is in its input. ``separate_networks`` gives the answer update a network of its own
(the paper's ablation). f is ``num_layers`` post-norm blocks: a token mixer (attention with rotary
embeddings, or ``mlp_t``, an MLP across the positions) then a SwiGLU MLP across channels, each followed
by a residual add and an RMSNorm.

Two baselines share the pieces: ``single_pass`` applies f once to x + y0 + z0 and decodes; ``unshared``
applies n + 1 separate networks in a row (the depth of one recursion, no weight sharing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reasonkit.trm.schema import TRMNetwork

# watch(kind, supervision-relative recursion t, before, after): kind "z" (latent update) or "y" (answer)
Watcher = Callable[[str, int, torch.Tensor, torch.Tensor], None]


def rms_norm(h: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(h, (h.shape[-1],), eps=1e-5)


class SwiGLU(nn.Module):
    def __init__(self, width: int, expansion: float):
        super().__init__()
        inner = max(8, round(expansion * width * 2 / 3))  # 2/3: the same parameters as a plain MLP
        self.gate_up = nn.Linear(width, 2 * inner, bias=False)
        self.down = nn.Linear(inner, width, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(h).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class MLPAcrossPositions(nn.Module):
    """mlp_t: mixes the L positions with a SwiGLU along the sequence axis (a fixed L, no attention)."""

    def __init__(self, seq_len: int, expansion: float):
        super().__init__()
        self.mlp = SwiGLU(seq_len, expansion)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [B, L, D]
        return self.mlp(h.transpose(1, 2)).transpose(1, 2)


def rotary_tables(seq_len: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    inverse = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inverse)  # [L, head_dim/2]
    return angles.cos(), angles.sin()


def apply_rotary(q: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of each head's channels by the position's angles."""
    first, second = q.chunk(2, dim=-1)  # [B, H, L, head_dim/2] each
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


class Attention(nn.Module):
    """Bidirectional self-attention over the cells, rotary position embeddings."""

    def __init__(self, width: int, heads: int, seq_len: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        cos, sin = rotary_tables(seq_len, width // heads)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # [B, L, D]
        B, L, D = h.shape
        q, k, v = (
            self.qkv(h).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        )  # [B, H, L, d]
        q, k = apply_rotary(q, self.cos[:L], self.sin[:L]), apply_rotary(k, self.cos[:L], self.sin[:L])
        mixed = F.scaled_dot_product_attention(q, k, v)  # no mask: every cell sees every cell
        return self.out(mixed.transpose(1, 2).reshape(B, L, D))


class Block(nn.Module):
    def __init__(self, net: TRMNetwork, seq_len: int):
        super().__init__()
        if net.block == "mlp_t":
            self.mixer: nn.Module = MLPAcrossPositions(seq_len, net.expansion)
        else:
            self.mixer = Attention(net.hidden_size, net.num_heads, seq_len)
        self.mlp = SwiGLU(net.hidden_size, net.expansion)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = rms_norm(h + self.mixer(h))  # post-norm, as the reference: states stay on one scale however
        return rms_norm(h + self.mlp(h))  # many times the network is applied


class Network(nn.Module):
    """f: ``num_layers`` blocks."""

    def __init__(self, net: TRMNetwork, seq_len: int):
        super().__init__()
        self.blocks = nn.ModuleList(Block(net, seq_len) for _ in range(net.num_layers))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            h = block(h)
        return h


@dataclass
class StepOutput:
    y: torch.Tensor  # [B, L, D] answer state, detached: carried to the next supervision step
    z: torch.Tensor  # [B, L, D] latent state, detached
    logits: torch.Tensor  # [B, L, V] the answer decoded from y
    halt_logits: torch.Tensor | None  # [B] > 0: the Q head says the answer is right (None without halting)


class TRM(nn.Module):
    def __init__(self, net: TRMNetwork, vocab_size: int, seq_len: int, halting: bool):
        super().__init__()
        self.config, self.seq_len, self.vocab_size = net, seq_len, vocab_size
        D = net.hidden_size
        self.embed = nn.Embedding(vocab_size, D)
        nn.init.normal_(self.embed.weight, std=1.0)  # on the scale of the RMS-normed states it is added to
        if net.mode == "unshared":
            self.stack = nn.ModuleList(Network(net, seq_len) for _ in range(net.latent_steps + 1))
        else:
            self.f_latent = Network(net, seq_len)
            self.f_answer_own = Network(net, seq_len) if net.separate_networks else None
        self.head = nn.Linear(D, vocab_size, bias=False)
        self.q_head = nn.Linear(D, 1) if halting and net.mode == "trm" else None
        if self.q_head is not None:
            # Start out saying "not sure yet" (logit -5): examples run all steps until the head has learned.
            nn.init.zeros_(self.q_head.weight)
            nn.init.constant_(self.q_head.bias, -5.0)
        states = torch.randn(2, D) if net.init_states == "random" else torch.zeros(2, D)
        self.register_buffer("y_init", rms_norm(states[0]))
        self.register_buffer("z_init", rms_norm(states[1]))

    @property
    def f_answer(self) -> Network:
        # Shared (the default): the same f as the latent update, not registered twice.
        return self.f_answer_own if self.f_answer_own is not None else self.f_latent

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (batch, self.seq_len, self.config.hidden_size)
        return self.y_init.expand(shape).clone(), self.z_init.expand(shape).clone()  # [B, L, D] each

    def forward(self, tokens: torch.Tensor, y: torch.Tensor, z: torch.Tensor, watch: Watcher | None = None):
        """One supervision step from the carried (y, z); tokens [B, L] are the puzzle."""
        x = self.embed(tokens)  # [B, L, D]
        mode = self.config.mode
        if mode == "trm":
            y, z = self.deep_recursion(x, y, z, watch)
        elif mode == "single_pass":
            y = self.f_latent(x + y + z)
        else:
            y = x + y + z
            for network in self.stack:
                y = network(y)
        logits = self.head(y)  # [B, L, V]
        halt = self.q_head(y.mean(dim=1)).squeeze(-1) if self.q_head is not None else None  # [B]
        return StepOutput(y.detach(), z.detach(), logits, halt)

    def deep_recursion(self, x, y, z, watch: Watcher | None = None):
        T = self.config.recursions
        with torch.no_grad():
            for t in range(T - 1):
                y, z = self.latent_recursion(x, y, z, t, watch)
        return self.latent_recursion(x, y, z, T - 1, watch, last=True)

    def latent_recursion(self, x, y, z, t: int, watch: Watcher | None = None, last: bool = False):
        n = self.config.latent_steps
        one_step = self.config.gradient == "one_step"
        for i in range(n):
            # HRM's 1-step gradient: of the last recursion only its last latent and answer updates
            # are differentiated; the ones before run as if they were gradient-free.
            with torch.set_grad_enabled(torch.is_grad_enabled() and not (one_step and last and i < n - 1)):
                z_new = self.f_latent(x + y + z)
            if watch:
                watch("z", t, z, z_new)
            z = z_new
        y_new = self.f_answer(y + z)
        if watch:
            watch("y", t, y, y_new)
        return y_new, z

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        return self.head(y).argmax(-1)  # [B, L]

    def effective_depth(self) -> int:
        """Layers applied per supervision step (the paper's "effective depth")."""
        c = self.config
        if c.mode == "trm":
            return c.recursions * (c.latent_steps + 1) * c.num_layers
        return c.num_layers * (c.latent_steps + 1 if c.mode == "unshared" else 1)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-cell cross-entropy under stable-max (the reference's choice on Sudoku): s(x) = x + 1 for
    x >= 0, 1 / (1 - x) below, p = s(x) / sum s(x). Grows linearly instead of exponentially, which the
    reference found to keep long training on small data from blowing up. Computed in float64.

    >>> round(stablemax_cross_entropy(torch.tensor([[0.0, 0.0]]), torch.tensor([0])).item(), 4)
    0.6931
    """
    x = logits.double()
    s = torch.where(x >= 0, x + 1, 1 / (1 - x))
    return -(torch.log(s.gather(-1, labels.unsqueeze(-1)).squeeze(-1)) - torch.log(s.sum(-1))).float()


def cell_losses(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """[B, L] cross-entropy per cell, softmax or stablemax."""
    if kind == "stablemax":
        return stablemax_cross_entropy(logits, labels)
    return F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")


def learning_rate_factor(step: int, warmup: int, total: int, kind: str) -> float:
    """Multiplier of the learning rate at optimizer step ``step`` (0-based): linear warm-up, then
    constant or cosine down to 0.

    >>> [round(learning_rate_factor(s, 2, 10, "cosine"), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
