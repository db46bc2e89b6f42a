"""``create_model``: build an EgoVLPv2 from a recipe and load its weights."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from egovlpv2.config import ConfigError
from egovlpv2.model.compile import CompileMode, compile_model
from egovlpv2.model.config import ModelConfig, resolve_model_config
from egovlpv2.model.egovlpv2 import EgoVLPv2
from egovlpv2.model.loading import load_checkpoint
from egovlpv2.model.pretrained import inflate_vit, load_roberta

log = logging.getLogger(__name__)

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


def create_model(config: "str | Path | dict | ModelConfig" = "egovlpv2-base", compile: "str | CompileMode" = "off",
                 **overrides) -> EgoVLPv2:
    """Build an EgoVLPv2.

    ``config``: a recipe name in ``egovlpv2/recipes/model/`` (``"egovlpv2-base"``, ``"egovlpv2-base-smallproj"``,
    ``"egovlpv2-tiny"``), a YAML path, a mapping or a :class:`ModelConfig`. ``overrides``: ``num_frames``,
    ``projection`` (``"mlp4096"``/``"linear256"``), ``vision_init`` (a timm ViT file), ``text_init`` (a Hugging
    Face RoBERTa directory), ``checkpoint`` (an EgoVLPv2 checkpoint, released or ours; its temporal embedding is
    resized to ``num_frames``). A checkpoint replaces every weight, so the single-tower inits are then skipped.
    ``compile``: ``"off"``, ``"blocks"`` (one ``torch.compile`` region per transformer block) or ``"full"`` (one
    per entry point), see :mod:`egovlpv2.model.compile`; compilation happens at the first call.
    """
    mode = CompileMode.parse(compile)
    cfg = apply_model_overrides(resolve_model_config(config), **overrides)
    model = EgoVLPv2(cfg)
    if cfg.checkpoint:
        if cfg.vision_init or cfg.text_init:
            log.info("checkpoint %s given: vision_init/text_init are not used", cfg.checkpoint)
        load_checkpoint(model, cfg.checkpoint)
    else:
        if cfg.vision_init:
            inflate_vit(model.video, cfg.vision_init)
        if cfg.text_init:
            load_roberta(model.text, cfg.text_init)
    return compile_model(model, mode)
