"""Model cost accounting: parameters by part, and analytic forward FLOPs per clip (for benchmarks and MFU).

FLOPs count the matrix multiplications (2 per multiply-accumulate), including attention scores and
weighted sums; element-wise work (norms, softmax, GELU) is left out, as is usual for MFU. A training step
costs about 3x the forward FLOPs (4x with activation checkpointing).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from egovlpv2.model.config import ModelConfig
from egovlpv2.model.heads import PROJECTION_DIMS

# Default text length for cost figures: the pre-training recipe truncates narrations to 15 tokens.
DEFAULT_TEXT_LEN = 15


def parameter_part(name: str) -> str:
    """The part a parameter belongs to: fusion, video, text, projection, fused_heads or mlm_head."""
    if ".cross_attn." in name:
        return "fusion"
    top = name.split(".", 1)[0]
    if top in ("video", "text"):
        return top
    if top in ("video_proj", "text_proj"):
        return "projection"
    if top == "mlm_head":
        return "mlm_head"
    return "fused_heads"  # fused CLS token and norm, cross-modal transforms, VTM head


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter counts by :func:`parameter_part`, plus ``total`` (works on meta-device models)."""
    counts = {"video": 0, "text": 0, "fusion": 0, "projection": 0, "fused_heads": 0, "mlm_head": 0}
    for name, p in model.named_parameters():
        counts[parameter_part(name)] += p.numel()
    counts["total"] = sum(counts.values())
    return counts


def _linear(tokens: int, fan_in: int, fan_out: int) -> int:
    return 2 * tokens * fan_in * fan_out


def _attend(queries: int, keys: int, dim: int) -> int:
    """Scores and weighted sum of ``queries`` queries over ``keys`` keys each."""
    return 2 * 2 * queries * keys * dim


@dataclass
class ForwardFlops:
    """Forward FLOPs of one clip (one video with one text) by part."""

    video: int
    text: int
    fusion: int
    heads: int

    @property
    def total(self) -> int:
        return self.video + self.text + self.fusion + self.heads


def video_block_flops(cfg: ModelConfig, frames: int) -> int:
    """One Frozen-in-Time block without fusion: temporal and spatial attention with their CLS, and the MLP."""
    v = cfg.video
    p = (v.img_size // v.patch_size) ** 2
    d, s = v.dim, 1 + frames * p
    attn_proj = _linear(s, d, 3 * d) + _linear(s, d, d)
    time = attn_proj + _attend(1, s, d) + _attend(frames * p, frames + 1, d)
    space = attn_proj + _attend(1, s, d) + _attend(frames * p, p + 1, d)
    mlp = 2 * _linear(s, d, int(d * v.mlp_ratio))
    return time + space + mlp


def text_layer_flops(cfg: ModelConfig, text_len: int) -> int:
    t, l = cfg.text, text_len
    return _linear(l, t.hidden, 3 * t.hidden) + _attend(l, l, t.hidden) + _linear(l, t.hidden, t.hidden) \
        + 2 * _linear(l, t.hidden, t.intermediate)


def fusion_layer_flops(cfg: ModelConfig, frames: int, text_len: int) -> int:
    """The two cross-attentions of one fused layer pair (video reads text, text reads video)."""
    v = cfg.video
    d, s, l = v.dim, 1 + frames * (v.img_size // v.patch_size) ** 2, text_len
    video_side = _linear(s, d, d) + _linear(l, d, 2 * d) + _attend(s, l, d) + _linear(s, d, d)
    text_side = _linear(l, d, d) + _linear(s, d, 2 * d) + _attend(l, s, d) + _linear(l, d, d)
    return video_side + text_side


def forward_flops(cfg: ModelConfig, frames: int | None = None, mode: str = "dual",
                  text_len: int = DEFAULT_TEXT_LEN) -> ForwardFlops:
    """Forward FLOPs per clip in ``dual`` mode (both towers and projectors) or ``fusion`` mode (both towers
    with cross-attention in the top layers and the VTM head; the MLM head is :func:`mlm_head_flops`)."""
    if mode not in ("dual", "fusion"):
        raise ValueError(f"mode must be 'dual' or 'fusion', got {mode!r}")
    frames = frames or cfg.video.num_frames
    v, t = cfg.video, cfg.text
    patches = frames * (v.img_size // v.patch_size) ** 2
    video = _linear(patches, 3 * v.patch_size**2, v.dim) + v.depth * video_block_flops(cfg, frames)
    text = t.layers * text_layer_flops(cfg, text_len)
    d = v.dim
    if mode == "dual":
        if cfg.projection == "mlp4096":
            width = PROJECTION_DIMS["mlp4096"]
            proj = _linear(1, d, width) + 2 * _linear(1, width, width)
        else:
            proj = _linear(1, d, PROJECTION_DIMS[cfg.projection])
        return ForwardFlops(video=video, text=text, fusion=0, heads=2 * proj)
    fusion = cfg.fusion_layers * fusion_layer_flops(cfg, frames, text_len)
    heads = 4 * _linear(1, d, d) + _linear(1, 2 * d, 2)  # transforms, poolers, classifier
    return ForwardFlops(video=video, text=text, fusion=fusion, heads=heads)


def mlm_head_flops(cfg: ModelConfig, tokens: int) -> int:
    """The cross-modal text transform and MLM head on ``tokens`` text tokens."""
    d = cfg.text.hidden
    return 2 * _linear(tokens, d, d) + _linear(tokens, d, cfg.text.vocab_size)


# ---------------------------------------------------------------- the stacked alternative
def stacked_fusion_layer_parameters(cfg: ModelConfig) -> int:
    """One stacked co-attention layer of one modality (METER/ALBEF style): self-attention, cross-attention
    and FFN, each with its LayerNorm."""
    d, hidden = cfg.text.hidden, cfg.text.intermediate
    attention = 4 * (d * d + d)
    ffn = d * hidden + hidden + hidden * d + d
    return 2 * attention + ffn + 3 * 2 * d


def stacked_fusion_flops(cfg: ModelConfig, frames: int, text_len: int = DEFAULT_TEXT_LEN, layers: int = 6) -> int:
    """Forward FLOPs per clip of ``layers`` stacked co-attention layers per modality on top of the towers.

    The video-side layers run full self-attention over all ``1 + T*P`` video tokens (no divided attention).
    """
    d, hidden = cfg.text.hidden, cfg.text.intermediate
    s = 1 + frames * (cfg.video.img_size // cfg.video.patch_size) ** 2

    def layer(n: int, other: int) -> int:
        self_attn = _linear(n, d, 3 * d) + _attend(n, n, d) + _linear(n, d, d)
        cross = _linear(n, d, d) + _linear(other, d, 2 * d) + _attend(n, other, d) + _linear(n, d, d)
        return self_attn + cross + 2 * _linear(n, d, hidden)

    return layers * (layer(s, text_len) + layer(text_len, s))
