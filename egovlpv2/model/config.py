"""Model configuration: the TimeSformer video tower, the RoBERTa text tower and fusion."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

from egovlpv2.config import ConfigError, NonNegativeInt, PositiveFloat, PositiveInt, Range, from_dict, load_yaml
from egovlpv2.recipes import recipe_names, resolve_recipe


@dataclass
class VideoConfig:
    img_size: PositiveInt = 224
    patch_size: PositiveInt = 16
    dim: PositiveInt = 768
    depth: PositiveInt = 12
    heads: PositiveInt = 12
    mlp_ratio: PositiveFloat = 4.0
    num_frames: PositiveInt = 4
    layer_norm_eps: PositiveFloat = 1e-5


@dataclass
class TextConfig:
    vocab_size: PositiveInt = 50265
    hidden: PositiveInt = 768
    layers: PositiveInt = 12
    heads: PositiveInt = 12
    intermediate: PositiveInt = 3072
    # Two positions are the padding offset of RoBERTa's position ids: at least one text token needs a third.
    max_positions: Annotated[int, Range(3)] = 514
    type_vocab_size: PositiveInt = 1
    pad_token_id: NonNegativeInt = 1
    dropout: Annotated[float, Range(0, 1, open_high=True)] = 0.1
    attention_dropout: Annotated[float, Range(0, 1, open_high=True)] = 0.1
    layer_norm_eps: PositiveFloat = 1e-5


@dataclass
class ModelConfig:
    name: str = "egovlpv2-base"
    video: VideoConfig = field(default_factory=VideoConfig)
    text: TextConfig = field(default_factory=TextConfig)
    # Cross-attention fuses the top `fusion_layers` layers of both towers.
    fusion_layers: NonNegativeInt = 6
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
