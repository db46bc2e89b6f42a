"""Small building blocks shared by both towers: the MLP, SDPA head reshaping, block checkpointing."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with exact (erf) GELU."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, N, H*d] -> [B, H, N, d]``."""
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[B, H, N, d] -> [B, N, H*d]``."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def attention(q, k, v, mask=None, dropout: float = 0.0) -> torch.Tensor:
    """Scaled dot-product attention (scale ``d**-0.5``) through PyTorch SDPA (flash/memory-efficient on GPU).

    ``mask`` is boolean, True where a key may be attended, broadcastable to ``[B, H, Nq, Nk]``.
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)


def key_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` (1 = token) -> boolean ``[B, 1, 1, L]`` for :func:`attention`."""
    return attention_mask.bool()[:, None, None, :]


def mark_dynamic_inputs(block: nn.Module, args: tuple) -> None:
    """Mark the dimensions listed in ``block.dynamic_dims`` (argument index -> dims; set by
    ``egovlpv2.model.compile``) dynamic for ``torch.compile``, so other sizes reuse the compiled graph.

    ``maybe_mark_dynamic``: a dimension the graph must specialise anyway (a batch of 1) is specialised
    instead of raising."""
    for index, axes in getattr(block, "dynamic_dims", {}).items():
        if index < len(args) and torch.is_tensor(args[index]):
            for axis in axes:
                torch._dynamo.maybe_mark_dynamic(args[index], axis)


def run_block(block: nn.Module, *args, **kwargs):
    """Call ``block``, under non-reentrant activation checkpointing when its ``grad_checkpointing`` attribute
    is set (``EgoVLPv2.set_grad_checkpointing``) and grads are on. A compiled block (``egovlpv2.model.compile``)
    gets its batch and text-length dimensions marked dynamic first."""
    mark_dynamic_inputs(block, args)
    if getattr(block, "grad_checkpointing", False) and torch.is_grad_enabled():
        return checkpoint(block, *args, use_reentrant=False, **kwargs)
    return block(*args, **kwargs)


def l2_normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x / max(||x||, eps)`` along the last dimension."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)
