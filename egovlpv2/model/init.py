"""Random initialisation, as in the original: BERT-style for text, fusion and heads; ViT-style for video."""
from __future__ import annotations

import torch
from torch import nn


def _bert_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _vit_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def zero_init_time_attention(video: nn.Module) -> None:
    """Temporal attention starts as a no-op so every block equals its ViT block.

    qkv is zero (its output is 0); the projection weight is filled with ones rather than zeros, as in
    Frozen-in-Time, so the gradient reaching qkv is not multiplied by 0 * 0.
    """
    for block in video.blocks:
        nn.init.zeros_(block.time_attn.qkv.weight)
        nn.init.zeros_(block.time_attn.qkv.bias)
        nn.init.ones_(block.time_attn.proj.weight)
        nn.init.zeros_(block.time_attn.proj.bias)


def init_weights(model: nn.Module) -> None:
    """Initialise an :class:`~egovlpv2.model.egovlpv2.EgoVLPv2` in place. Gates stay 0."""
    model.apply(_bert_init)
    video = model.video
    video.apply(_vit_init)
    for block in video.blocks:
        if block.cross_attn is not None:  # fusion modules follow the BERT-style init
            block.cross_attn.apply(_bert_init)
    nn.init.trunc_normal_(video.cls_token, std=0.02)
    nn.init.trunc_normal_(video.pos_embed, std=0.02)
    nn.init.zeros_(video.temporal_embed)
    nn.init.zeros_(model.fused_cls_token)
    zero_init_time_attention(video)
