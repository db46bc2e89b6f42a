"""Divided space-time attention with CLS tokens, arranged so that memory traffic stays near its minimum.

The attention FLOPs of a divided block are small; what costs time on a GPU is moving tokens between the
frame-major layout and the groups. Here the ``qkv`` output is regrouped by one copy (:class:`GroupTokens`)
into a buffer ``[B, G, H, 3, 1 + L, d]``: per group (a frame, or a location across frames) and head, CLS 0
then the group's ``L`` patches. The group queries (CLS 0's slot included, its result dropped) attend to
their slots; the CLS queries attend to strided views of ``qkv`` itself. The outputs go back by one copy
(:class:`UngroupTokens`). Both functions write their gradients straight into the layout autograd needs,
where the equivalent view/cat/unbind chain would copy them two or three times more. Under ``torch.compile``
their forwards run as plain ops (:func:`group_tokens`, :func:`ungroup_tokens`) and Inductor fuses the
derived backward instead.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from egovlpv2.model.layers import attention

Axis = Literal["time", "space"]


def _grid(rows: torch.Tensor, frames: int, time: bool) -> torch.Tensor:
    """Patch rows ``[B, T*P, ...]`` as ``[B, G, L, ...]`` groups (a view)."""
    grid = rows.unflatten(1, (frames, -1))
    return grid.transpose(1, 2) if time else grid


def group_tokens(qkv: torch.Tensor, num_cls: int, frames: int, time: bool, heads: int):
    """The forward of :class:`GroupTokens` as plain tensor ops (differentiable by autograd)."""
    b, s, c3 = qkv.shape
    tokens = qkv.view(b, s, 3, heads, -1)
    grid = _grid(tokens[:, num_cls:], frames, time)  # [B, G, L, 3, H, d]
    buf = qkv.new_empty(b, grid.shape[1], heads, 3, 1 + grid.shape[2], tokens.shape[-1])
    buf[..., 1:, :] = grid.permute(0, 1, 4, 3, 2, 5)
    buf[..., 0, :] = tokens[:, 0].transpose(1, 2)[:, None]
    q, k, v = buf.unbind(3)
    all_k, all_v = (tokens[:, :, i].transpose(1, 2) for i in (1, 2))
    cls_q = tokens[:, :num_cls, 0].transpose(1, 2).clone()
    return q, k, v, all_k, all_v, cls_q


def ungroup_tokens(cls: torch.Tensor, groups_out: torch.Tensor, frames: int, time: bool) -> torch.Tensor:
    """The forward of :class:`UngroupTokens` as plain tensor ops (differentiable by autograd)."""
    b, heads, n, d = cls.shape
    groups, slots = groups_out.shape[1], groups_out.shape[3]
    out = cls.new_empty(b, n + groups * (slots - 1), heads, d)
    out[:, :n] = cls.transpose(1, 2)
    _grid(out[:, n:], frames, time).copy_(groups_out[..., 1:, :].transpose(2, 3))
    return out.flatten(2)


class GroupTokens(torch.autograd.Function):
    """``qkv [B, n_cls + T*P, 3C]`` -> the attention inputs:
    - ``q, k, v`` ``[B, G, H, 1 + L, d]``: per group and head, CLS 0 then the group (one new buffer);
    - ``k, v`` ``[B, H, n_cls + T*P, d]`` over all tokens (views of ``qkv``) and the CLS queries
      ``[B, H, n_cls, d]``, for the CLS attention.
    """

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, num_cls: int, frames: int, time: bool, heads: int):
        b, s, c3 = qkv.shape
        ctx.tokens_shape, ctx.num_cls, ctx.frames, ctx.time = (b, s, 3, heads, c3 // (3 * heads)), num_cls, frames, time
        ctx.dtype, ctx.device = qkv.dtype, qkv.device
        return group_tokens(qkv, num_cls, frames, time, heads)

    @staticmethod
    def backward(ctx, gq, gk, gv, g_all_k, g_all_v, g_cls_q):
        n = ctx.num_cls
        grad = torch.empty(ctx.tokens_shape, dtype=ctx.dtype, device=ctx.device)  # [B, S, 3, H, d]
        grad[:, 1:n] = 0
        grid = _grid(grad[:, n:], ctx.frames, ctx.time)  # [B, G, L, 3, H, d]
        for i, g in enumerate((gq, gk, gv)):
            grid[:, :, :, i] = 0 if g is None else g[..., 1:, :].transpose(2, 3)
            grad[:, 0, i] = 0 if g is None else g[..., 0, :].sum(1)
        for i, g in ((1, g_all_k), (2, g_all_v)):
            if g is not None:
                grad[:, :, i] += g.transpose(1, 2)
        if g_cls_q is not None:
            grad[:, :n, 0] += g_cls_q.transpose(1, 2)
        return grad.flatten(2), None, None, None, None


class UngroupTokens(torch.autograd.Function):
    """The attention outputs back to tokens: CLS ``[B, H, n_cls, d]`` and groups ``[B, G, H, 1 + L, d]``
    (their CLS slot dropped) -> ``[B, n_cls + T*P, C]``."""

    @staticmethod
    def forward(ctx, cls: torch.Tensor, groups_out: torch.Tensor, frames: int, time: bool):
        ctx.groups_shape, ctx.num_cls, ctx.frames, ctx.time = groups_out.shape, cls.shape[2], frames, time
        return ungroup_tokens(cls, groups_out, frames, time)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        b, groups, heads, slots, d = ctx.groups_shape
        n = ctx.num_cls
        tokens = grad.unflatten(2, (heads, d))
        g_groups = grad.new_empty(b, groups, heads, slots, d)
        g_groups[..., 0, :] = 0
        g_groups[..., 1:, :] = _grid(tokens[:, n:], ctx.frames, ctx.time).transpose(2, 3)
        return tokens[:, :n].transpose(1, 2), g_groups, None, None


def short_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention over a handful of keys (the temporal groups: T+1), as two batched matmuls.

    Flash kernels tile queries by 64-128, so tens of thousands of 5-token sequences waste most of their work;
    on an H100 explicit matmuls made the 4-frame video forward ~13% faster. Softmax runs in float32.
    """
    scores = q.flatten(0, -3) @ k.flatten(0, -3).transpose(1, 2)
    weights = (scores.to(torch.promote_types(scores.dtype, torch.float32)) * q.shape[-1] ** -0.5).softmax(-1)
    return (weights.to(v.dtype) @ v.flatten(0, -3)).view(q.shape)


class DividedAttention(nn.Module):
    """Self-attention along one axis of the patch grid, plus CLS tokens.

    A patch query attends to its group (``time``: the same location in every frame; ``space``: its own
    frame) and to the key/value of CLS 0. The query of each CLS ``c`` attends to CLS ``c`` itself and all
    patches. With one CLS this is exactly the Frozen-in-Time attention; with two, CLS 1 reads the patches
    but no patch reads it.
    """

    def __init__(self, dim: int, heads: int, axis: Axis):
        super().__init__()
        self.heads = heads
        self.axis = axis
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, frames: int, num_cls: int) -> torch.Tensor:
        time = self.axis == "time"
        # Under torch.compile the plain ops go to AOTAutograd, which derives and fuses the backward itself.
        group, ungroup = ((group_tokens, ungroup_tokens) if torch.compiler.is_compiling()
                          else (GroupTokens.apply, UngroupTokens.apply))
        q, k, v, all_k, all_v, cls_q = group(self.qkv(x), num_cls, frames, time, self.heads)
        if time:
            groups_out = short_attention(q, k, v)
        else:
            groups_out = attention(*(t.flatten(0, 1) for t in (q, k, v))).unflatten(0, q.shape[:2])
        visible = None
        if num_cls > 1:  # CLS c reads itself and the patches
            key = torch.arange(all_k.shape[2], device=x.device)
            visible = (key[None, :] == torch.arange(num_cls, device=x.device)[:, None]) | (key >= num_cls)[None, :]
        cls_out = attention(cls_q, all_k, all_v, visible)
        return self.proj(ungroup(cls_out, groups_out, frames, time))
