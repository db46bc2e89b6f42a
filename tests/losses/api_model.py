"""A model of a few hundred parameters with the loss-facing API of ``docs/architecture.md``.

The losses' maths is tested on it in milliseconds; ``test_objective_model.py`` runs the same checks on
the real ``egovlpv2-tiny`` model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn


@dataclass
class VideoStates:
    tokens: torch.Tensor  # [B, T, D]
    frames: int


@dataclass
class TextStates:
    hidden: torch.Tensor  # [B, L, D]
    attention_mask: torch.Tensor


@dataclass
class FusedOutput:
    video_cls: torch.Tensor
    text_hidden: torch.Tensor


class ApiModel(nn.Module):
    def __init__(self, vocab_size: int = 40, dim: int = 8, pixels: int = 3 * 4 * 4, dropout: float = 0.0):
        super().__init__()
        self.frame = nn.Linear(pixels, dim)
        self.words = nn.Embedding(vocab_size, dim)
        self.video_low, self.text_low = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.video_up, self.text_up = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.video_proj, self.text_proj = nn.Linear(dim, 6), nn.Linear(dim, 6)
        self.to_video, self.to_text = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.vtm = nn.Linear(2 * dim, 2)
        self.mlm = nn.Linear(dim, vocab_size)
        self.drop = nn.Dropout(dropout)

    def video_lower(self, video: torch.Tensor) -> VideoStates:
        x = self.frame(video.flatten(2))
        return VideoStates(torch.tanh(self.video_low(self.drop(x))), video.shape[1])

    def text_lower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextStates:
        h = torch.tanh(self.text_low(self.drop(self.words(input_ids))))
        return TextStates(h, attention_mask)

    def dual_from_lower(self, video_states: VideoStates, text_states: TextStates):
        v = torch.tanh(self.video_up(video_states.tokens)).mean(1)
        t = torch.tanh(self.text_up(self.drop(text_states.hidden)))[:, 0]
        return self.video_proj(v), self.text_proj(t)

    def fused_from_lower(self, video_states: VideoStates, text_states: TextStates) -> FusedOutput:
        v, t = video_states.tokens, text_states.hidden
        m = text_states.attention_mask.unsqueeze(-1).to(t.dtype)
        text_summary = (t * m).sum(1) / m.sum(1)
        v2 = torch.tanh(self.video_up(v) + self.to_video(text_summary)[:, None])
        t2 = torch.tanh(self.text_up(t) + self.to_text(v.mean(1))[:, None])
        return FusedOutput(v2.mean(1), t2)

    def vtm_logits(self, fused: FusedOutput) -> torch.Tensor:
        return self.vtm(torch.cat([fused.text_hidden[:, 0], fused.video_cls], 1))

    def mlm_logits(self, fused: FusedOutput, positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = fused.text_hidden if positions is None else fused.text_hidden[positions]
        return self.mlm(h)
