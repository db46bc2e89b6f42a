"""Gated cross-attention that fuses the top layers of the two towers ("fusion in the backbone").

Each fused video block and text layer owns one of these modules under the name ``cross_attn``. The gate is
a learnable shape-[1] parameter (not 0-d: DeepSpeed rejects 0-d bf16 parameters) initialised to 0 and
applied without tanh, so at initialisation the fused path equals the dual encoder.
"""
from __future__ import annotations

import torch
from torch import nn

from egovlpv2.model.layers import attention, key_padding_mask, merge_heads, split_heads


class VideoCrossAttention(nn.Module):
    """Video tokens attend to text states, inside the spatial attention of a fused video block.

    ``y + gate * proj(softmax(q k^T / sqrt(d) + text padding) v)`` with ``q = q(norm(y))`` where ``y`` is the
    spatial self-attention output (after its projection), and ``k, v`` come from one ``kv`` Linear over the
    text states (keys first).
    """

    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.gate = nn.Parameter(torch.zeros(1))
        self.kv = nn.Linear(dim, 2 * dim)
        self.q = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, y: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        k, v = self.kv(text).chunk(2, dim=-1)
        q = split_heads(self.q(self.norm(y)), self.heads)
        out = attention(q, split_heads(k, self.heads), split_heads(v, self.heads), key_padding_mask(text_mask))
        return y + self.gate * self.proj(merge_heads(out))


class TextCrossSelf(nn.Module):
    """Query/key/value projections of the text-side cross-attention (Hugging Face ``self`` naming)."""

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)


class TextCrossOutput(nn.Module):
    """Output projection of the text-side cross-attention; no LayerNorm inside."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)


class TextCrossAttention(nn.Module):
    """Text tokens attend to all video tokens (unmasked), RoBERTa-style.

    Called on the text self-attention output ``a`` before its residual and LayerNorm; returns
    ``a + gate * output(attn(query(a), key(video), value(video)))``.
    """

    def __init__(self, dim: int, heads: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.heads = heads
        self.attention_dropout = attention_dropout
        self.gate = nn.Parameter(torch.zeros(1))
        self.self = TextCrossSelf(dim)
        self.output = TextCrossOutput(dim, dropout)

    def forward(self, a: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.self.query(a), self.heads)
        k = split_heads(self.self.key(video), self.heads)
        v = split_heads(self.self.value(video), self.heads)
        p = self.attention_dropout if self.training else 0.0
        out = self.output.dropout(self.output.dense(merge_heads(attention(q, k, v, dropout=p))))
        return a + self.gate * out
