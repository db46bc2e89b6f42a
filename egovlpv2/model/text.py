"""RoBERTa text tower with Hugging Face ``RobertaModel`` state-dict names (no pooler).

With fusion off it computes exactly what ``transformers.RobertaModel(...).last_hidden_state`` does, so
``roberta-base`` weights load unchanged. The top ``fusion_layers`` layers own a ``cross_attn``
(:class:`~egovlpv2.model.fusion.TextCrossAttention`) used only in fusion mode.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from egovlpv2.model.config import TextConfig
from egovlpv2.model.fusion import TextCrossAttention
from egovlpv2.model.layers import attention, key_padding_mask, merge_heads, run_block, split_heads


def roberta_position_ids(input_ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """RoBERTa positions: tokens count up from ``padding_idx + 1``; padding tokens get ``padding_idx``."""
    not_pad = input_ids.ne(padding_idx).long()
    return torch.cumsum(not_pad, dim=1) * not_pad + padding_idx


class RobertaEmbeddings(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.padding_idx = cfg.pad_token_id
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_positions, cfg.hidden, padding_idx=cfg.pad_token_id)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] + self.padding_idx >= self.position_embeddings.num_embeddings:
            raise ValueError(
                f"text of {input_ids.shape[1]} tokens exceeds the {self.position_embeddings.num_embeddings - 2} "
                "positions of the text tower"
            )
        positions = roberta_position_ids(input_ids, self.padding_idx)
        # Token type ids are all 0.
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class RobertaSelfAttention(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.heads = cfg.heads
        self.attention_dropout = cfg.attention_dropout
        self.query = nn.Linear(cfg.hidden, cfg.hidden)
        self.key = nn.Linear(cfg.hidden, cfg.hidden)
        self.value = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(proj(x), self.heads) for proj in (self.query, self.key, self.value))
        p = self.attention_dropout if self.training else 0.0
        return merge_heads(attention(q, k, v, mask, dropout=p))


class DenseLayerNorm(nn.Module):
    """``dense`` -> dropout, then ``LayerNorm(. + residual)`` (RobertaSelfOutput / RobertaOutput)."""

    def __init__(self, cfg: TextConfig, fan_in: int):
        super().__init__()
        self.dense = nn.Linear(fan_in, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)


class RobertaAttention(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.self = RobertaSelfAttention(cfg)
        self.output = DenseLayerNorm(cfg, cfg.hidden)


class RobertaIntermediate(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.intermediate)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class RobertaLayer(nn.Module):
    """Self-attention, [gated cross-attention to video], add & LayerNorm, FFN, add & LayerNorm."""

    def __init__(self, cfg: TextConfig, fused: bool):
        super().__init__()
        self.attention = RobertaAttention(cfg)
        self.intermediate = RobertaIntermediate(cfg)
        self.output = DenseLayerNorm(cfg, cfg.intermediate)
        self.cross_attn = (
            TextCrossAttention(cfg.hidden, cfg.heads, cfg.dropout, cfg.attention_dropout) if fused else None
        )

    def forward(self, h: torch.Tensor, mask: torch.Tensor, video: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.attention.output
        a = out.dropout(out.dense(self.attention.self(h, mask)))
        if video is not None:
            # Fusion enters on the self-attention output, before its residual and LayerNorm.
            a = self.cross_attn(a, video)
        h = out.LayerNorm(a + h)
        ffn = self.output
        return ffn.LayerNorm(ffn.dropout(ffn.dense(self.intermediate(h))) + h)


class RobertaEncoder(nn.Module):
    def __init__(self, cfg: TextConfig, fusion_layers: int):
        super().__init__()
        first_fused = cfg.layers - fusion_layers
        self.layer = nn.ModuleList(RobertaLayer(cfg, fused=i >= first_fused) for i in range(cfg.layers))


class RobertaText(nn.Module):
    """``embeddings`` + ``encoder.layer``: the parameter names of Hugging Face ``RobertaModel``."""

    def __init__(self, cfg: TextConfig, fusion_layers: int):
        super().__init__()
        self.cfg = cfg
        self.embeddings = RobertaEmbeddings(cfg)
        self.encoder = RobertaEncoder(cfg, fusion_layers)

    def run(self, h: torch.Tensor, attention_mask: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Layers ``start..stop-1`` without fusion; ``attention_mask`` is ``[B, L]`` with 1 = token."""
        mask = key_padding_mask(attention_mask)
        for layer in self.encoder.layer[start:stop]:
            h = run_block(layer, h, mask)
        return h
