"""Consolidate a DeepSpeed (ZeRO-2 or ZeRO-3) training checkpoint into one weights file.

The result loads with ``egovlpv2.create_model(recipe, checkpoint=path)``, strictly. Two layouts:
- ``ours``: this package's parameter names, fp32, in a ``.safetensors`` file whose metadata carries the
  model config (``egovlpv2_model_config``, JSON) and the training step;
- ``released``: the key layout of the released ``EgoVLPv2.pth`` files (``module.``-prefixed names under
  ``state_dict`` in a ``.pth``, or bare released names in a ``.safetensors``), for code written against
  the release.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import torch

from egovlpv2.config import load_yaml, to_dict
from egovlpv2.errors import MissingPathError, UsageError, UserError
from egovlpv2.model.config import ModelConfig
from egovlpv2.model.loading import RELEASED_KEY_TABLE, RELEASED_POSITION_IDS
from egovlpv2.train.config import PretrainConfig, load_pretrain_config, pretrain_config_from_dict

# The engine wraps the model in ObjectiveModule, whose attribute is `model`.
ENGINE_PREFIX = "model."
_GROUP = re.compile(r"\((?:[^()\\]|\\.)*\)")


def _invert(pattern: str, replacement: str) -> tuple[str, str]:
    """Invert one (released regex -> our template) rule of RELEASED_KEY_TABLE into (our regex -> released template)."""
    groups = _GROUP.findall(pattern)
    pieces = re.split(r"\\(\d)", replacement)  # literal, group number, literal, ...
    inverse_pattern = ""
    for i, piece in enumerate(pieces):
        inverse_pattern += re.escape(piece) if i % 2 == 0 else groups[int(piece) - 1]
    literals = _GROUP.split(pattern)
    inverse_repl = ""
    for i, literal in enumerate(literals):
        inverse_repl += re.sub(r"\\(.)", r"\1", literal)
        if i < len(groups):
            inverse_repl += "\\" + str(pieces[1::2].index(str(i + 1)) + 1)
    return inverse_pattern, inverse_repl


RELEASED_INVERSE_TABLE = [_invert(p, r) for p, r in RELEASED_KEY_TABLE]


def released_key(name: str) -> str:
    for pattern, repl in RELEASED_INVERSE_TABLE:
        if re.fullmatch(pattern, name):
            return re.sub(f"^{pattern}$", repl, name)
    raise KeyError(f"{name} has no name in the released layout")


def to_released(state: dict[str, torch.Tensor], max_positions: int) -> dict[str, torch.Tensor]:
    out = {released_key(k): v for k, v in state.items()}
    out[RELEASED_POSITION_IDS] = torch.arange(max_positions).unsqueeze(0)
    return out


def resolve_run(run: str | Path, recipe: Optional[str] = None) -> tuple[Path, PretrainConfig]:
    """``(checkpoints directory, pre-training config)`` of a run directory or its ``checkpoints/``; the config
    is the run's ``config.yaml`` unless ``recipe`` names the pre-training recipe it used."""
    run = Path(run)
    ckpt_dir = run / "checkpoints" if (run / "checkpoints").is_dir() else run
    run_dir = ckpt_dir.parent
    if recipe:
        return ckpt_dir, load_pretrain_config(recipe)
    if not (run_dir / "config.yaml").is_file():
        raise MissingPathError(f"no config.yaml in {run_dir}: pass --config with the run's recipe")
    return ckpt_dir, pretrain_config_from_dict(load_yaml(run_dir / "config.yaml"), str(run_dir / "config.yaml"))


def consolidate(checkpoint_dir: str | Path, tag: Optional[str] = None) -> tuple[dict[str, torch.Tensor], str]:
    """fp32 model weights of a ZeRO-2/3 checkpoint (``tag`` defaults to ``latest``), with our names."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    checkpoint_dir = Path(checkpoint_dir)
    if tag is None:
        latest = checkpoint_dir / "latest"
        if not latest.is_file():
            raise MissingPathError(f"{checkpoint_dir} has no `latest` file: pass --tag or a checkpoints directory")
        tag = latest.read_text().strip()
    if not (checkpoint_dir / tag).is_dir():
        raise MissingPathError(f"no checkpoint {checkpoint_dir / tag}")
    state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint_dir), tag=tag)
    foreign = [k for k in state if not k.startswith(ENGINE_PREFIX)]
    if foreign:
        raise UserError(f"{checkpoint_dir / tag} is not an EgoVLPv2 training checkpoint: keys {foreign[:5]}")
    return {k[len(ENGINE_PREFIX):]: v.contiguous() for k, v in state.items()}, tag


def export(checkpoint_dir: str | Path, out: str | Path, model_cfg: ModelConfig, tag: Optional[str] = None,
           layout: str = "ours", dtype: torch.dtype = torch.float32) -> Path:
    state, tag = consolidate(checkpoint_dir, tag)
    return write_weights(state, out, model_cfg, tag, layout, dtype)


def write_weights(state: dict[str, torch.Tensor], out: str | Path, model_cfg: ModelConfig, tag: str,
                  layout: str = "ours", dtype: torch.dtype = torch.float32) -> Path:
    """Write model weights (our names) as one file in ``layout``; ``tag`` names the training checkpoint."""
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if layout == "released":
        state = to_released(state, model_cfg.text.max_positions)
        if out.suffix != ".safetensors":
            torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, out)
            return out
    elif layout != "ours":
        raise ValueError(f"layout must be 'ours' or 'released', got {layout!r}")
    from safetensors.torch import save_file

    if out.suffix != ".safetensors":
        raise UsageError(f"{out}: the {layout} layout is written as .safetensors")
    meta = {"egovlpv2_model_config": json.dumps(to_dict(model_cfg)), "step_tag": tag, "layout": layout}
    save_file(state, str(out), metadata=meta)
    return out
