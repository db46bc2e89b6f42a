"""The video encoder alone: EgoVLPv2's video tower and video projection, for feature extraction.

It computes the dual-mode video embedding (``EgoVLPv2.encode_video``) with the same operations, so its
embeddings equal the full model's bit for bit. The fused blocks' cross-attention is never used in dual mode
and is left out, so a saved encoder is the video tower, its norm and the projection. It saves and loads in
the Hub format like the full model, and also loads the video part of a full model's Hub directory.
"""
from __future__ import annotations

import torch
from torch import nn

from egovlpv2.model.config import ModelConfig
from egovlpv2.model.egovlpv2 import EgoVLPv2
from egovlpv2.model.heads import build_projections
from egovlpv2.model.hub import HubModel
from egovlpv2.model.layers import l2_normalize
from egovlpv2.model.loading import load_state_dict_strict, prepare_checkpoint_state, torch_load
from egovlpv2.model.video import TimeSformer, VideoTowerSizes


class EgoVLPv2VideoEncoder(nn.Module, VideoTowerSizes, HubModel):
    """``encode_video([B, T, 3, H, W]) -> [B, D]``, L2-normalised. Built with PyTorch's default initialisation:
    its weights come from :meth:`from_model` or ``from_pretrained``."""

    video_only = True
    provenance = None

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.video = TimeSformer(cfg.video, fusion_layers=0)
        self.video_proj = build_projections(cfg.projection, cfg.video.dim)[0]

    @classmethod
    def from_model(cls, model: EgoVLPv2) -> "EgoVLPv2VideoEncoder":
        """The video encoder of a full model (weights copied)."""
        encoder = cls(model.cfg)
        full = model.state_dict()
        encoder.load_state_dict({k: full[k] for k in encoder.state_dict()}, strict=True)
        encoder.provenance = model.provenance
        return encoder.train(model.training)

    def load_weights(self, path) -> None:
        """Load an encoder's weights, or the video part of a full model's (checked whole, strictly)."""
        state = prepare_checkpoint_state(self, torch_load(path))
        if any(k.startswith("text.") for k in state):
            with torch.device("meta"):  # the full model, without memory, to check the file's keys and shapes
                full = EgoVLPv2(self.cfg)
            load_state_dict_strict(full, state, source=str(path), assign=True)
            state = {k: state[k] for k in self.state_dict()}
        load_state_dict_strict(self, state, source=str(path))

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """L2-normalised dual-mode video embedding ``[B, D]`` of ``[B, T, 3, H, W]`` normalised frames."""
        x = self.video.embed(video, [self.video.cls_token])
        x = self.video.run(x, video.shape[1], 0, self.cfg.video.depth, 1)
        return l2_normalize(self.video_proj(self.video.norm(x[:, 0])))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.encode_video(video)
