"""Weight loading from local files: EgoVLPv2 checkpoints (released and ours), timm ViTs, Hugging Face RoBERTa.

Everything loads strictly. A missing, unexpected or mis-shaped key is a :class:`CheckpointError` that lists
the keys; nothing is skipped silently. ``torch.load`` always runs with ``weights_only=True``.
"""
from __future__ import annotations

import logging
import pathlib
import re
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub.constants import SAFETENSORS_SINGLE_FILE
from torch import nn

from egovlpv2.errors import UserError

log = logging.getLogger(__name__)


class CheckpointError(UserError, RuntimeError):
    """A weights file that does not fit the model (the user's to fix: the command line prints one line)."""


# Released EgoVLPv2 names -> ours, first full match wins. Anything not matched is an error.
RELEASED_KEY_TABLE: list[tuple[str, str]] = [
    (r"video_model\.blocks\.(\d+)\.timeattn\.(.+)", r"video.blocks.\1.time_attn.\2"),
    (r"video_model\.blocks\.(\d+)\.attn\.alpha_i2t", r"video.blocks.\1.cross_attn.gate"),
    (r"video_model\.blocks\.(\d+)\.attn\.qkv_text_i2t\.(.+)", r"video.blocks.\1.cross_attn.kv.\2"),
    (r"video_model\.blocks\.(\d+)\.attn\.qkv_i2t\.(.+)", r"video.blocks.\1.cross_attn.q.\2"),
    (r"video_model\.blocks\.(\d+)\.attn\.proj_i2t\.(.+)", r"video.blocks.\1.cross_attn.proj.\2"),
    (r"video_model\.blocks\.(\d+)\.attn\.norm_i2t_i\.(.+)", r"video.blocks.\1.cross_attn.norm.\2"),
    (r"video_model\.(.+)", r"video.\1"),
    (r"text_model\.encoder\.layer\.(\d+)\.alpha_t2i", r"text.encoder.layer.\1.cross_attn.gate"),
    (r"text_model\.encoder\.layer\.(\d+)\.crossattention_t2i\.(.+)", r"text.encoder.layer.\1.cross_attn.\2"),
    (r"text_model\.(.+)", r"text.\1"),
    (r"cls_token", r"fused_cls_token"),
    (r"norm\.(weight|bias)", r"fused_norm.\1"),
    (r"txt_proj\.(.+)", r"text_proj.\1"),
    (r"vid_proj\.(.+)", r"video_proj.\1"),
    (r"cross_modal_text_transform\.(.+)", r"fused_text_transform.\1"),
    (r"cross_modal_video_transform\.(.+)", r"fused_video_transform.\1"),
    (r"cross_modal_text_pooler\.dense\.(.+)", r"vtm_head.text_pooler.\1"),
    (r"cross_modal_video_pooler\.dense\.(.+)", r"vtm_head.video_pooler.\1"),
    (r"itm_score\.fc\.(.+)", r"vtm_head.classifier.\1"),
    (r"mlm_score\.transform\.dense\.(.+)", r"mlm_head.dense.\1"),
    (r"mlm_score\.transform\.LayerNorm\.(.+)", r"mlm_head.norm.\1"),
    (r"mlm_score\.decoder\.weight", r"mlm_head.decoder.weight"),
    (r"mlm_score\.bias", r"mlm_head.bias"),
]
# The release stores RoBERTa's position-id buffer; we compute positions from the ids instead, so this key is
# checked to hold the standard 0..N-1 positions and then dropped.
RELEASED_POSITION_IDS = "text_model.embeddings.position_ids"


class ReleasedTrainingConfig:
    """Stand-in for the training-config object the released checkpoints pickle next to the weights.

    Registered for ``weights_only`` unpickling under the original class name so the file loads without
    running arbitrary code; its contents are kept as plain attributes and otherwise unused.
    """


try:  # numpy >= 2
    from numpy._core.multiarray import scalar as _numpy_scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import scalar as _numpy_scalar

# Globals the released checkpoint files may contain besides tensors (training metadata).
RELEASED_SAFE_GLOBALS = [
    (ReleasedTrainingConfig, "parse_config.ConfigParser"),
    pathlib.PosixPath,
    pathlib.PurePosixPath,
    np.dtype,
    _numpy_scalar,
    type(np.dtype(np.float64)),
    type(np.dtype(np.float32)),
    type(np.dtype(np.int64)),
]


def map_released_key(name: str) -> str | None:
    """Our parameter name for released name ``name`` (without ``module.``), or None if the table has none."""
    for pattern, repl in RELEASED_KEY_TABLE:
        if re.fullmatch(pattern, name):
            return re.sub(f"^{pattern}$", repl, name)
    return None


def torch_load(path: str | Path):
    """``torch.load(weights_only=True)`` with the allow-list the released EgoVLPv2 files need; a ``.safetensors``
    file, or a Hub-format directory's ``model.safetensors``, through safetensors."""
    path = Path(path)
    if path.is_dir():  # a Hub-format directory (save_pretrained, egovlpv2-export --format hub)
        if not (path / SAFETENSORS_SINGLE_FILE).is_file():
            raise CheckpointError(f"{path} is a directory without {SAFETENSORS_SINGLE_FILE}: not a Hub-format model")
        path = path / SAFETENSORS_SINGLE_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":  # egovlpv2-export writes these
        from safetensors.torch import load_file

        return load_file(str(path))
    with torch.serialization.safe_globals(RELEASED_SAFE_GLOBALS):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # the unpickler names the offending global
            raise CheckpointError(f"{path}: cannot load with weights_only=True: {exc}") from exc


def unwrap_state_dict(obj) -> dict[str, torch.Tensor]:
    """The tensor mapping inside a checkpoint: ``state_dict`` (released), ``module`` (DeepSpeed), ``model``, or the
    mapping itself; a ``module.`` prefix (DataParallel/DDP) is removed."""
    for key in ("state_dict", "module", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError("no state dict found: expected a tensor mapping, or one under 'state_dict'/'module'/'model'")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def is_released_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(("video_model.", "text_model.")) for k in state_dict)


def convert_released(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a released state dict (no ``module.``) to our names through :data:`RELEASED_KEY_TABLE`."""
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for name, value in state_dict.items():
        if name == RELEASED_POSITION_IDS:
            expected = torch.arange(value.shape[-1]).expand_as(value)
            if not torch.equal(value.long(), expected):
                raise CheckpointError(f"{name} does not hold the positions 0..{value.shape[-1] - 1}")
            continue
        ours = map_released_key(name)
        if ours is None:
            unmapped.append(name)
        else:
            out[ours] = value
    if unmapped:
        raise CheckpointError(f"{len(unmapped)} released key(s) have no mapping: {unmapped}")
    return out


def resize_temporal_embed(embed: torch.Tensor, frames: int) -> torch.Tensor:
    """``[1, F, D] -> [1, frames, D]``: linear interpolation over time (corners aligned) when growing,
    truncation when shrinking."""
    if embed.shape[1] == frames:
        return embed
    if embed.shape[1] > frames:
        return embed[:, :frames].clone()
    grid = embed.float().unsqueeze(0)  # [1, 1, F, D]: an image to resize along its height only
    out = F.interpolate(grid, size=(frames, embed.shape[2]), mode="bilinear", align_corners=True)
    return out.squeeze(0).to(embed.dtype)


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint",
                           assign: bool = False) -> None:
    """``module.load_state_dict(strict=True)`` with an error that lists every missing, unexpected or mis-shaped key."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(
        f"{k}: {tuple(state_dict[k].shape)} in {source}, {tuple(expected[k].shape)} in the model"
        for k in set(expected) & set(state_dict)
        if state_dict[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {unexpected}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {shapes}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(state_dict, strict=True, assign=assign)


def prepare_checkpoint_state(model: nn.Module, checkpoint) -> dict[str, torch.Tensor]:
    """A loaded checkpoint (released or our layout, possibly wrapped) -> our names, with the temporal
    embedding resized to the model's frame count."""
    state = unwrap_state_dict(checkpoint)
    if is_released_layout(state):
        state = convert_released(state)
    key = "video.temporal_embed"
    frames = model.video.temporal_embed.shape[1]
    if key in state and state[key].dim() == 3 and state[key].shape[1] != frames:
        log.info("temporal embedding: %d -> %d frames", state[key].shape[1], frames)
        state[key] = resize_temporal_embed(state[key], frames)
    return state


def load_checkpoint(model: nn.Module, path: str | Path, assign: bool = False) -> None:
    """Load an EgoVLPv2 checkpoint file (released ``EgoVLPv2*.pth`` or our exports) strictly into ``model``."""
    state = prepare_checkpoint_state(model, torch_load(path))
    load_state_dict_strict(model, state, source=str(path), assign=assign)
    log.info("loaded %s", path)
