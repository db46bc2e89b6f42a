"""Intermediate states passed between the lower (shared) and upper (dual or fused) layers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

ClsKind = Literal["dual", "fused"]
# Which CLS tokens lead VideoStates.tokens, in order; the first one is the CLS that patches attend to.
CLS_LAYOUTS = {"dual": ("dual",), "fused": ("fused",), "both": ("dual", "fused")}


@dataclass
class VideoStates:
    """Video tokens after the lower layers ``0..M-1``.

    ``tokens``: ``[B, len(cls) + T*P, D]``, the CLS tokens named by ``cls`` first, then the patches.
    """

    tokens: torch.Tensor
    frames: int
    cls: tuple[str, ...]

    def select(self, index: torch.Tensor) -> "VideoStates":
        """The states of rows ``index`` (e.g. the videos paired into VTM negatives)."""
        return VideoStates(self.tokens[index], self.frames, self.cls)

    def with_cls(self, kind: ClsKind) -> torch.Tensor:
        """``[B, 1 + T*P, D]``: the ``kind`` CLS followed by the patches."""
        if kind not in self.cls:
            raise ValueError(
                f"these video states carry the {self.cls} CLS token(s), not {kind!r}; "
                f"call video_lower(video, cls={kind!r} or 'both')"
            )
        n = len(self.cls)
        if n == 1:
            return self.tokens
        i = self.cls.index(kind)
        return torch.cat([self.tokens[:, i : i + 1], self.tokens[:, n:]], dim=1)


@dataclass
class TextStates:
    """Text hidden states after the lower layers; ``attention_mask`` is ``[B, L]`` with 1 = token."""

    hidden: torch.Tensor
    attention_mask: torch.Tensor

    def select(self, index: torch.Tensor) -> "TextStates":
        return TextStates(self.hidden[index], self.attention_mask[index])


@dataclass
class FusedOutput:
    """Result of the fused upper layers.

    ``video_cls``: ``[B, D]`` the fused path's final-norm CLS; ``text_hidden``: ``[B, L, D]`` last text layer;
    ``video_tokens``: ``[B, 1 + T*P, D]`` last video block (before the final norm).
    """

    video_cls: torch.Tensor
    text_hidden: torch.Tensor
    video_tokens: torch.Tensor
