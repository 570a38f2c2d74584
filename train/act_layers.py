"""Transformer layers and position embeddings of ACT (post-norm DETR-style layers, sequence-first tensors).

Module and parameter names match LeRobot's ACT (`layers.N.self_attn`, `linear1`, `norm1`, ...) so that its
state dict loads unchanged. Tensors are (S, B, D) as in DETR and `nn.MultiheadAttention`'s default layout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from edgeact.train.config import ACTConfig
from torch import Tensor, nn


def _activation(name: str):
    return F.gelu if name == "gelu" else F.relu


class Dropout(nn.Dropout):
    """`nn.Dropout` with a cheaper CPU training mask. `F.dropout` draws one float per element
    (`bernoulli_`); here one 64-bit draw of the same seeded generator gives four 16-bit numbers, and an
    element is kept when its number is below a threshold: P(keep) = round((1 - p) * 65536) / 65536 (p = 0.1
    drops with probability 0.100006), and kept values are scaled by the inverse of that exact probability, so
    the expectation is x. About 3x faster than drawing floats (docs/training.md). Other devices, eval mode
    and p = 0 behave as `nn.Dropout`."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        keep_count = round((1.0 - self.p) * 65536)  # of the 65536 values of a 16-bit number
        if keep_count <= 0:
            return x * 0.0
        if keep_count >= 65536:
            return x
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), 2**63 - 1)
        keep = bits.view(torch.int16)[:n].view(x.shape) < (keep_count - 32768)
        return x * keep * (65536.0 / keep_count)


class _ResidualLayer(nn.Module):
    """What the encoder and decoder layers share: the norm placement between sub-layers and the feed-forward.
    Subclasses create `linear1`, `dropout`, `linear2`, `activation` and `pre_norm` (LeRobot's names)."""

    def _next_input(
        self, x: Tensor, done_norm: nn.LayerNorm, next_norm: nn.LayerNorm
    ) -> tuple[Tensor, Tensor]:
        """(skip, input) of the next sub-layer after a residual add. Pre-norm keeps the sum as the skip and
        normalizes the input with `next_norm`; post-norm normalizes the sum with `done_norm` (both)."""
        if self.pre_norm:
            return x, next_norm(x)
        x = done_norm(x)
        return x, x

    def _feed_forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class ACTEncoderLayer(_ResidualLayer):
    """Self-attention + feed-forward; the position embedding is added to queries and keys, not to values."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__()
        d = config.dim_model
        self.self_attn = nn.MultiheadAttention(d, config.n_heads, dropout=config.dropout)
        self.linear1 = nn.Linear(d, config.dim_feedforward)
        self.dropout = Dropout(config.dropout)
        self.linear2 = nn.Linear(config.dim_feedforward, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.dropout1 = Dropout(config.dropout)
        self.dropout2 = Dropout(config.dropout)
        self.activation = _activation(config.feedforward_activation)
        self.pre_norm = config.pre_norm

    def forward(
        self, x: Tensor, pos_embed: Tensor | None = None, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        # x: (S, B, D); pos_embed: (S, 1, D) or (S, B, D); key_padding_mask: (B, S), True = ignore.
        skip = x
        if self.pre_norm:
            x = self.norm1(x)
        qk = x if pos_embed is None else x + pos_embed
        x = self.self_attn(qk, qk, value=x, key_padding_mask=key_padding_mask, need_weights=False)[0]
        skip, x = self._next_input(skip + self.dropout1(x), self.norm1, self.norm2)
        x = skip + self.dropout2(self._feed_forward(x))
        return x if self.pre_norm else self.norm2(x)


class ACTEncoder(nn.Module):
    """A stack of encoder layers (a final LayerNorm only with pre-norm)."""

    def __init__(self, config: ACTConfig, n_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([ACTEncoderLayer(config) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(config.dim_model) if config.pre_norm else nn.Identity()

    def forward(
        self, x: Tensor, pos_embed: Tensor | None = None, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        for layer in self.layers:
            x = layer(x, pos_embed=pos_embed, key_padding_mask=key_padding_mask)
        return self.norm(x)  # (S, B, D)


class ACTDecoderLayer(_ResidualLayer):
    """Self-attention over the queries, cross-attention into the encoder output, feed-forward."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__()
        d = config.dim_model
        self.self_attn = nn.MultiheadAttention(d, config.n_heads, dropout=config.dropout)
        self.multihead_attn = nn.MultiheadAttention(d, config.n_heads, dropout=config.dropout)
        self.linear1 = nn.Linear(d, config.dim_feedforward)
        self.dropout = Dropout(config.dropout)
        self.linear2 = nn.Linear(config.dim_feedforward, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)
        self.dropout1 = Dropout(config.dropout)
        self.dropout2 = Dropout(config.dropout)
        self.dropout3 = Dropout(config.dropout)
        self.activation = _activation(config.feedforward_activation)
        self.pre_norm = config.pre_norm

    def forward(self, x: Tensor, memory: Tensor, query_pos: Tensor, memory_pos: Tensor) -> Tensor:
        # x: (k, B, D) decoder tokens; memory: (S, B, D) encoder output;
        # query_pos: (k, 1, D); memory_pos: (S, 1, D).
        skip = x
        if self.pre_norm:
            x = self.norm1(x)
        qk = x + query_pos
        x = self.self_attn(qk, qk, value=x, need_weights=False)[0]
        skip, x = self._next_input(skip + self.dropout1(x), self.norm1, self.norm2)
        x = self.multihead_attn(x + query_pos, memory + memory_pos, value=memory, need_weights=False)[0]
        skip, x = self._next_input(skip + self.dropout2(x), self.norm2, self.norm3)
        x = skip + self.dropout3(self._feed_forward(x))
        return x if self.pre_norm else self.norm3(x)


class ACTDecoder(nn.Module):
    """A stack of decoder layers followed by a LayerNorm."""

    def __init__(self, config: ACTConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList([ACTDecoderLayer(config) for _ in range(config.n_decoder_layers)])
        self.norm = nn.LayerNorm(config.dim_model)

    def forward(self, x: Tensor, memory: Tensor, query_pos: Tensor, memory_pos: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, memory, query_pos, memory_pos)
        return self.norm(x)  # (k, B, D)


def sine_pos_embed_1d(n_positions: int, dim: int) -> Tensor:
    """Fixed 1-D sinusoidal table (Vaswani et al. 2017), (n_positions, dim): sin even, cos odd channels."""
    pos = torch.arange(n_positions, dtype=torch.float64).unsqueeze(1)  # (N, 1)
    channel = torch.arange(dim, dtype=torch.float64)
    angle = pos / torch.pow(10000.0, 2 * torch.div(channel, 2, rounding_mode="floor") / dim)  # (N, dim)
    table = torch.where(channel.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.to(torch.float32)


def sine_pos_embed_2d(height: int, width: int, dim_model: int) -> Tensor:
    """DETR's 2-D sine embedding of an h x w feature map as image-token embeddings (h*w, 1, dim_model).

    Positions run 1..n along each axis, scaled to (0, 2pi]; each axis gets dim_model/2 channels with sine and
    cosine interleaved; the y channels come first. It depends only on the feature-map size, so it is computed
    once per camera and exported as a constant.
    """
    half = dim_model // 2
    eps, temperature = 1e-6, 10000.0
    y = torch.arange(1, height + 1, dtype=torch.float32)
    x = torch.arange(1, width + 1, dtype=torch.float32)
    y = y / (height + eps) * (2 * math.pi)  # (h,)
    x = x / (width + eps) * (2 * math.pi)  # (w,)
    freq = temperature ** (
        2 * torch.div(torch.arange(half), 2, rounding_mode="floor").float() / half
    )  # (half,)

    def interleave(angle: Tensor) -> Tensor:  # (n, half) -> (n, half): sin, cos, sin, cos, ...
        return torch.stack((angle[:, 0::2].sin(), angle[:, 1::2].cos()), dim=-1).flatten(1)

    emb_y = interleave(y[:, None] / freq)  # (h, half)
    emb_x = interleave(x[:, None] / freq)  # (w, half)
    grid = torch.cat(
        (emb_y[:, None, :].expand(height, width, half), emb_x[None, :, :].expand(height, width, half)), dim=-1
    )  # (h, w, dim_model)
    return grid.reshape(height * width, 1, dim_model)  # token order: row-major over (h, w)
