"""Heads: dual-mode projectors, and the fused path's VTM (video-text matching) and MLM heads."""
from __future__ import annotations

import torch
from torch import nn

PROJECTION_DIMS = {"mlp4096": 4096, "linear256": 256}
# LayerNorm eps of the MLM head's transform (BERT-style), distinct from the towers' 1e-5.
MLM_LAYER_NORM_EPS = 1e-12


def build_projections(kind: str, dim: int) -> tuple[nn.Sequential, nn.Sequential]:
    """``(video_proj, text_proj)``. Sequential indices match the released checkpoints.

    ``mlp4096``: ``Linear(dim, 4096, bias=False), ReLU, Linear(4096, 4096), ReLU, Linear(4096, 4096)`` for both.
    ``linear256``: video ``Linear(dim, 256)``; text ``ReLU, Linear(dim, 256)`` (ReLU first, as released).
    """
    if kind == "mlp4096":
        d = PROJECTION_DIMS[kind]

        def mlp() -> nn.Sequential:
            return nn.Sequential(nn.Linear(dim, d, bias=False), nn.ReLU(), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))

        return mlp(), mlp()
    if kind == "linear256":
        d = PROJECTION_DIMS[kind]
        return nn.Sequential(nn.Linear(dim, d)), nn.Sequential(nn.ReLU(), nn.Linear(dim, d))
    raise ValueError(f"unknown projection {kind!r}; known: {sorted(PROJECTION_DIMS)}")


class VTMHead(nn.Module):
    """``classifier(cat[tanh(text_pooler(t)), tanh(video_pooler(v))])``; column 1 of the logits = match.

    Its inputs are the fused text CLS and fused video CLS after the cross-modal transforms.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.text_pooler = nn.Linear(dim, dim)
        self.video_pooler = nn.Linear(dim, dim)
        self.classifier = nn.Linear(2 * dim, 2)

    def forward(self, text_cls: torch.Tensor, video_cls: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([torch.tanh(self.text_pooler(text_cls)), torch.tanh(self.video_pooler(video_cls))], -1)
        return self.classifier(pooled)


class MLMHead(nn.Module):
    """``decoder(LayerNorm(GELU(dense(x)))) + bias``; the decoder is not tied to the word embeddings."""

    def __init__(self, dim: int, vocab_size: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self.dense = nn.Linear(dim, dim)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(dim, eps=MLM_LAYER_NORM_EPS)
        self.decoder = nn.Linear(dim, vocab_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.act(self.dense(x)))) + self.bias
