"""Initialising the towers from single-modality weights: a timm ViT for video, a Hugging Face RoBERTa for text.

Only the parameters the source cannot provide keep their fresh initialisation, and they are named
explicitly: the temporal embedding, temporal attention and its norm, and the fusion modules.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from egovlpv2.model.loading import CheckpointError, load_state_dict_strict
from egovlpv2.model.text import RobertaText
from egovlpv2.model.video import TimeSformer

log = logging.getLogger(__name__)

# ViT keys with no place in the video tower (the image classifier).
VIT_UNUSED = re.compile(r"(head|pre_logits|fc_norm)\..+")
# TimeSformer parameters a ViT does not have; they keep their initialisation (temporal attention is a no-op).
TIMESFORMER_ONLY = re.compile(r"temporal_embed|blocks\.\d+\.(norm3|time_attn|cross_attn)\..+")
# Hugging Face RoBERTa keys we do not use: the pooler, and position/token-type buffers (computed instead).
ROBERTA_UNUSED = re.compile(r"pooler\..+|embeddings\.(position_ids|token_type_ids)")
# Text-tower parameters RoBERTa does not have.
TEXT_ONLY = re.compile(r"encoder\.layer\.\d+\.cross_attn\..+")


def read_vit_state_dict(path: str | Path, video: TimeSformer) -> dict[str, torch.Tensor]:
    """A timm ViT checkpoint (``.pth``/``.bin``/``.safetensors``, or the original JAX ``.npz``) as a timm state dict."""
    import timm.models
    from timm.models.vision_transformer import VisionTransformer

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ViT checkpoint not found: {path}")
    if path.suffix == ".npz":
        cfg = video.cfg
        vit = VisionTransformer(img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.dim, depth=cfg.depth,
                                num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, num_classes=0)
        vit.load_pretrained(str(path))
        return vit.state_dict()
    return timm.models.load_state_dict(str(path), use_ema=False, weights_only=True)


def inflate_vit(video: TimeSformer, path: str | Path) -> None:
    """Load a ViT into the spatial path of every block; with one frame the tower then equals the ViT."""
    from timm.layers import resample_abs_pos_embed

    vit = read_vit_state_dict(path, video)
    ignored = sorted(k for k in vit if VIT_UNUSED.fullmatch(k))
    state = {k: v for k, v in vit.items() if not VIT_UNUSED.fullmatch(k)}
    if "pos_embed" in state and state["pos_embed"].shape != video.pos_embed.shape:
        old = state["pos_embed"].shape[1] - 1
        side = int(round(old**0.5))
        new_side = int(round(video.patches_per_frame**0.5))
        log.info("resampling the ViT position embedding from %dx%d to %dx%d", side, side, new_side, new_side)
        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], [new_side, new_side], [side, side])
    for key, value in video.state_dict().items():
        if TIMESFORMER_ONLY.fullmatch(key):
            state[key] = value
    load_state_dict_strict(video, state, source=f"ViT {path}")
    log.info("video tower inflated from %s (ignored: %s)", path, ignored)


def load_roberta(text: RobertaText, directory: str | Path) -> None:
    """Load a local Hugging Face RoBERTa directory (config + weights) into the text tower."""
    from transformers import RobertaModel

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory} is not a Hugging Face model directory (no config.json)")
    hf, info = RobertaModel.from_pretrained(str(directory), add_pooling_layer=False, output_loading_info=True)
    if info.get("missing_keys"):
        raise CheckpointError(f"{directory}: weights missing for {sorted(info['missing_keys'])}")
    c, ours = hf.config, text.cfg
    pairs = {
        "hidden_size": (c.hidden_size, ours.hidden), "num_hidden_layers": (c.num_hidden_layers, ours.layers),
        "num_attention_heads": (c.num_attention_heads, ours.heads),
        "intermediate_size": (c.intermediate_size, ours.intermediate), "vocab_size": (c.vocab_size, ours.vocab_size),
        "max_position_embeddings": (c.max_position_embeddings, ours.max_positions),
        "type_vocab_size": (c.type_vocab_size, ours.type_vocab_size), "pad_token_id": (c.pad_token_id, ours.pad_token_id),
        "layer_norm_eps": (c.layer_norm_eps, ours.layer_norm_eps), "hidden_act": (c.hidden_act, "gelu"),
    }
    wrong = {k: v for k, v in pairs.items() if v[0] != v[1]}
    if wrong:
        raise CheckpointError(f"{directory}: config differs from the text tower (theirs, ours): {wrong}")
    state = {k: v for k, v in hf.state_dict().items() if not ROBERTA_UNUSED.fullmatch(k)}
    for key, value in text.state_dict().items():
        if TEXT_ONLY.fullmatch(key):
            state[key] = value
    load_state_dict_strict(text, state, source=f"RoBERTa {directory}")
    log.info("text tower loaded from %s", directory)
