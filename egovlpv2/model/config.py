"""Model configuration: the TimeSformer video tower, the RoBERTa text tower and fusion."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from egovlpv2.config import ConfigError, from_dict, load_yaml
from egovlpv2.recipes import recipe_names, resolve_recipe


@dataclass
class VideoConfig:
    img_size: int = 224
    patch_size: int = 16
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    num_frames: int = 4
    layer_norm_eps: float = 1e-5


@dataclass
class TextConfig:
    vocab_size: int = 50265
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072
    max_positions: int = 514
    type_vocab_size: int = 1
    pad_token_id: int = 1
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-5


@dataclass
class ModelConfig:
    name: str = "egovlpv2-base"
    video: VideoConfig = field(default_factory=VideoConfig)
    text: TextConfig = field(default_factory=TextConfig)
    # Cross-attention fuses the top `fusion_layers` layers of both towers.
    fusion_layers: int = 6
    projection: Literal["mlp4096", "linear256"] = "mlp4096"
    # Local files only: a timm ViT checkpoint, a Hugging Face RoBERTa directory, an EgoVLPv2 checkpoint.
    vision_init: Optional[str] = None
    text_init: Optional[str] = None
    checkpoint: Optional[str] = None

    def __post_init__(self) -> None:
        if self.video.dim != self.text.hidden:
            raise ConfigError(f"video.dim ({self.video.dim}) must equal text.hidden ({self.text.hidden})")
        depth = min(self.video.depth, self.text.layers)
        if not 0 <= self.fusion_layers <= depth:
            raise ConfigError(f"fusion_layers={self.fusion_layers} must lie in [0, {depth}]")
        if self.video.img_size % self.video.patch_size:
            raise ConfigError("video.img_size must be a multiple of video.patch_size")


def model_recipe_names() -> list[str]:
    return recipe_names("model")


def resolve_model_config(config: "str | Path | ModelConfig | dict") -> ModelConfig:
    """A recipe name (``egovlpv2-base``), a YAML path, a mapping or a ModelConfig."""
    if isinstance(config, ModelConfig):
        return config
    if isinstance(config, dict):
        return from_dict(ModelConfig, config)
    path = resolve_recipe("model", config)
    return from_dict(ModelConfig, load_yaml(path), str(path))


OVERRIDES = ("num_frames", "projection", "vision_init", "text_init", "checkpoint")


def apply_model_overrides(cfg: ModelConfig, **overrides) -> ModelConfig:
    """``cfg`` with the :data:`OVERRIDES` applied (``num_frames`` goes to ``cfg.video``)."""
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise ConfigError(f"unknown create_model overrides {unknown}; known: {list(OVERRIDES)}")
    if "num_frames" in overrides:
        frames = int(overrides.pop("num_frames"))
        if frames < 1:
            raise ConfigError(f"num_frames must be >= 1, got {frames}")
        cfg = dataclasses.replace(cfg, video=dataclasses.replace(cfg.video, num_frames=frames))
    if "projection" in overrides and overrides["projection"] not in ("mlp4096", "linear256"):
        raise ConfigError(f"projection must be 'mlp4096' or 'linear256', got {overrides['projection']!r}")
    paths = {k: (None if v is None else str(v)) for k, v in overrides.items()}
    return dataclasses.replace(cfg, **paths)
