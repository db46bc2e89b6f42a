"""Build the model an evaluation needs from a checkpoint: ours (exported) or the released EgoVLPv2 files.

Weights always go through the model's strict loader; this module only decides which recipe the file
belongs to when the user does not say, reading the file once.
"""
from __future__ import annotations

from pathlib import Path

import torch

import egovlpv2
from egovlpv2.errors import MissingPathError, UserError
from egovlpv2.model.loading import load_state_dict_strict, prepare_checkpoint_state, torch_load, unwrap_state_dict


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return unwrap_state_dict(torch_load(path))


def infer_recipe(state: dict[str, torch.Tensor]) -> str:
    """`egovlpv2-base` or `egovlpv2-base-smallproj`, from the width of the text projection
    (released names `txt_proj.*`, ours `text_proj.*`)."""
    widths = {tuple(v.shape)[0] for k, v in state.items()
              if k.startswith(("txt_proj.", "text_proj.")) and k.endswith("weight") and v.dim() == 2}
    if not widths:
        raise ValueError("the checkpoint holds no text projection weights: cannot infer its recipe; pass --model")
    return "egovlpv2-base-smallproj" if widths == {256} else "egovlpv2-base"


def load_eval_model(checkpoint: str | Path, model: str = "auto", num_frames: int = 16,
                    device: torch.device | str = "cpu"):
    """(model in eval mode on `device` with the checkpoint loaded strictly at `num_frames`, recipe used)."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        raise UserError(f"{checkpoint} is a directory (a DeepSpeed checkpoint?): export it to one file with "
                         f"egovlpv2-export first")
    if not checkpoint.is_file():
        raise MissingPathError(f"checkpoint not found: {checkpoint}")
    state = _load_state(checkpoint)
    recipe = infer_recipe(state) if model == "auto" else model
    net = egovlpv2.create_model(recipe, num_frames=num_frames)
    load_state_dict_strict(net, prepare_checkpoint_state(net, state), source=str(checkpoint))
    return net.to(device).eval(), recipe
