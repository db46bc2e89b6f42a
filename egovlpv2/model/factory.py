"""``create_model``: build an EgoVLPv2 from a recipe and load its weights."""
from __future__ import annotations

import logging
from pathlib import Path

from egovlpv2.model.compile import CompileMode, compile_model
from egovlpv2.model.config import ModelConfig, apply_model_overrides, resolve_model_config
from egovlpv2.model.egovlpv2 import EgoVLPv2
from egovlpv2.model.loading import load_checkpoint
from egovlpv2.model.pretrained import inflate_vit, load_roberta

log = logging.getLogger(__name__)


def create_model(config: "str | Path | dict | ModelConfig" = "egovlpv2-base", compile: "str | CompileMode" = "off",
                 **overrides) -> EgoVLPv2:
    """Build an EgoVLPv2.

    ``config``: a recipe name in ``egovlpv2/recipes/model/`` (``"egovlpv2-base"``, ``"egovlpv2-base-smallproj"``,
    ``"egovlpv2-tiny"``), a YAML path, a mapping or a :class:`ModelConfig`. ``overrides``: ``num_frames``,
    ``projection`` (``"mlp4096"``/``"linear256"``), ``vision_init`` (a timm ViT file), ``text_init`` (a Hugging
    Face RoBERTa directory), ``checkpoint`` (an EgoVLPv2 checkpoint, released or ours, or a Hub-format
    directory; its temporal embedding is resized to ``num_frames``). A checkpoint replaces every weight, so the single-tower inits are then skipped.
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
