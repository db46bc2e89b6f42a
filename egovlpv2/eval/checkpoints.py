"""Build the model an evaluation needs from a checkpoint: ours (exported) or the released EgoVLPv2 files.

Weights always go through the model's strict loader (`create_model(..., checkpoint=...)`); this module
only decides which recipe the file belongs to when the user does not say.
"""
from __future__ import annotations

from pathlib import Path

import torch

import egovlpv2


def checkpoint_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of a checkpoint file, without materialising the tensors."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    blob = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    state = blob.get("state_dict", blob.get("module", blob)) if isinstance(blob, dict) else blob
    return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


def infer_recipe(path: str | Path) -> str:
    """`egovlpv2-base` or `egovlpv2-base-smallproj`, from the width of the text projection."""
    try:
        shapes = checkpoint_shapes(path)
    except Exception as exc:  # an unreadable file: the strict loader will give the real error
        raise ValueError(f"cannot read {path} to infer its model recipe ({exc}); pass --model") from exc
    widths = {shape[0] for name, shape in shapes.items() if "txt_proj" in name and len(shape) == 2}
    if not widths:
        raise ValueError(f"{path} holds no txt_proj weights: cannot infer its recipe; pass --model")
    return "egovlpv2-base-smallproj" if widths == {256} else "egovlpv2-base"


def load_eval_model(checkpoint: str | Path, model: str = "auto", num_frames: int = 16,
                    device: torch.device | str = "cpu"):
    """The model in eval mode on `device`, with the checkpoint loaded strictly at `num_frames`."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        raise ValueError(f"{checkpoint} is a directory (a DeepSpeed checkpoint?): export it to one file with "
                         f"launch/export.py first")
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    recipe = infer_recipe(checkpoint) if model == "auto" else model
    net = egovlpv2.create_model(recipe, num_frames=num_frames, checkpoint=str(checkpoint))
    return net.to(device).eval(), recipe
