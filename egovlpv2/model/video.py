"""TimeSformer video tower: divided space-time attention in the Frozen-in-Time block form.

Tokens are ``[CLS..., patches]`` with patches frame-major (``T x P``, P patches per frame). The first CLS is
the one patches can see; a second, *carried* CLS (see :class:`DividedAttention`) lets the fused path's own
CLS ride along the lower layers without changing any patch state.
"""
from __future__ import annotations

import torch
from torch import nn

from egovlpv2.model.config import VideoConfig
from egovlpv2.model.divided import DividedAttention
from egovlpv2.model.fusion import VideoCrossAttention
from egovlpv2.model.layers import Mlp, run_block


class SpaceTimeBlock(nn.Module):
    """Frozen-in-Time block, optionally fused with text.

    ``x_t = x + time_attn(norm3(x))``; ``s = attn(norm1(x_t))`` (then ``cross_attn`` in fused blocks);
    ``x = x + s`` -- the residual is taken from ``x``, not ``x_t``, as in the original (its weights depend on
    it); ``x = x + mlp(norm2(x))``.
    """

    def __init__(self, cfg: VideoConfig, fused: bool):
        super().__init__()
        dim, eps = cfg.dim, cfg.layer_norm_eps
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = DividedAttention(dim, cfg.heads, "space")
        self.time_attn = DividedAttention(dim, cfg.heads, "time")
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        self.cross_attn = VideoCrossAttention(dim, cfg.heads, eps) if fused else None

    def forward(self, x, frames: int, num_cls: int = 1, text=None, text_mask=None) -> torch.Tensor:
        x_t = x + self.time_attn(self.norm3(x), frames, num_cls)
        s = self.attn(self.norm1(x_t), frames, num_cls)
        if text is not None:
            s = self.cross_attn(s, text, text_mask)
        x = x + s
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: VideoConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W] -> [B, T*P, D]`` (frame-major)."""
        b, t = video.shape[:2]
        x = self.proj(video.flatten(0, 1))  # [B*T, D, h, w]
        return x.flatten(2).transpose(1, 2).reshape(b, -1, x.shape[1])


class TimeSformer(nn.Module):
    """Patch/position/temporal embeddings, ``depth`` blocks (the top ``fusion_layers`` fused) and a final norm.

    The spatial position embedding ``[1, 1+P, D]`` is shared by all frames; the temporal embedding
    ``[1, T, D]`` is added to patch tokens only. The CLS tokens get ``pos_embed[:, 0]``.
    """

    def __init__(self, cfg: VideoConfig, fusion_layers: int):
        super().__init__()
        self.cfg = cfg
        self.patches_per_frame = (cfg.img_size // cfg.patch_size) ** 2
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patches_per_frame, cfg.dim))
        self.temporal_embed = nn.Parameter(torch.zeros(1, cfg.num_frames, cfg.dim))
        first_fused = cfg.depth - fusion_layers
        self.blocks = nn.ModuleList(SpaceTimeBlock(cfg, fused=i >= first_fused) for i in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)

    def embed(self, video: torch.Tensor, cls_tokens: list[torch.Tensor]) -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> ``[B, len(cls_tokens) + T*P, D]``; T may be below ``num_frames``."""
        if video.dim() != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be [B, T, 3, H, W], got {tuple(video.shape)}")
        b, t, _, hgt, wid = video.shape
        if (hgt, wid) != (self.cfg.img_size, self.cfg.img_size):
            raise ValueError(f"video frames are {hgt}x{wid}; this model takes {self.cfg.img_size}x{self.cfg.img_size}")
        if t > self.temporal_embed.shape[1]:
            raise ValueError(
                f"video has {t} frames but the model was built for {self.temporal_embed.shape[1]}; "
                f"create it with num_frames={t} (checkpoints interpolate their temporal embedding)"
            )
        patches = self.patch_embed(video)
        pos = self.pos_embed[:, 1:].repeat(1, t, 1) + self.temporal_embed[:, :t].repeat_interleave(
            self.patches_per_frame, dim=1
        )
        cls = [(tok + self.pos_embed[:, :1]).expand(b, -1, -1) for tok in cls_tokens]
        return torch.cat(cls + [patches + pos], dim=1)

    def run(self, x, frames: int, start: int, stop: int, num_cls: int = 1):
        """Blocks ``start..stop-1`` without fusion."""
        for block in self.blocks[start:stop]:
            x = run_block(block, x, frames, num_cls)
        return x


class VideoTowerSizes:
    """``num_frames`` and ``embed_dim`` of a module with a ``video`` tower and a ``video_proj`` projection."""

    @property
    def num_frames(self) -> int:
        """Frames the temporal embedding covers."""
        return self.video.temporal_embed.shape[1]

    @property
    def embed_dim(self) -> int:
        """Width of the dual-mode embeddings."""
        return self.video_proj[-1].out_features
