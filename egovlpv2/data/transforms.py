"""Frame augmentation on uint8 frames (in the loader workers) and normalisation (on the accelerator)."""
from __future__ import annotations

import math
import random

import cv2
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_video(video: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 ``[..., 3, H, W]`` -> ImageNet-normalised float, computed on the tensor's device."""
    if video.dtype != torch.uint8:
        raise TypeError(f"normalize_video expects uint8 frames, got {video.dtype}")
    mean = torch.tensor(IMAGENET_MEAN, device=video.device, dtype=dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=video.device, dtype=dtype).view(3, 1, 1)
    return (video.to(dtype) / 255.0 - mean) / std


def prepare_video(video: torch.Tensor, model: torch.nn.Module, device: torch.device | None = None) -> torch.Tensor:
    """A clip batch as ``model`` takes it: on ``device`` (default: where it is), ImageNet-normalised when it
    holds uint8 frames, in the dtype of the model's floating-point parameters."""
    if device is not None:
        video = video.to(device, non_blocking=True)
    if video.dtype == torch.uint8:
        video = normalize_video(video)
    return video.to(next(p.dtype for p in model.parameters() if p.is_floating_point()))


def _resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    # Bilinear is ~20x cheaper than area averaging; area only where bilinear would alias (shrinking > 2x).
    strong = width * 2 < frame.shape[1] or height * 2 < frame.shape[0]
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if strong else cv2.INTER_LINEAR)


def _to_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    # numpy's HWC -> CHW copy is ~15x faster than torch's permute().contiguous() on uint8.
    return torch.from_numpy(np.ascontiguousarray(np.stack(frames).transpose(0, 3, 1, 2)))


def random_resized_crop_box(height: int, width: int, scale: tuple[float, float], rng: random.Random,
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop covering ``scale`` of the area with aspect ratio in ``ratio``."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    side = min(height, width)  # fall back to the central square
    return (height - side) // 2, (width - side) // 2, side, side


def train_transform(frames: np.ndarray, img_size: int, scale: tuple[float, float], hflip: bool,
                    rng: random.Random, out: torch.Tensor | None = None) -> torch.Tensor:
    """``[T, H, W, 3]`` uint8 -> ``[T, 3, S, S]`` uint8: one random resized crop and flip for all frames.

    With ``out`` (a ``[T, 3, S, S]`` uint8 tensor, e.g. a row of a batch in shared memory) the frames are
    written there, each copied once, and ``out`` is returned."""
    top, left, h, w = random_resized_crop_box(frames.shape[1], frames.shape[2], scale, rng)
    flip = hflip and rng.random() < 0.5
    crops = []
    for frame in frames:
        crop = _resize(frame[top:top + h, left:left + w], img_size, img_size)
        crops.append(cv2.flip(crop, 1) if flip else crop)
    if out is None:
        return _to_tensor(crops)
    target = out.numpy()
    for t, crop in enumerate(crops):
        target[t] = crop.transpose(2, 0, 1)
    return out


def eval_transform(frames: np.ndarray, img_size: int, resize: int = 256) -> torch.Tensor:
    """``[T, H, W, 3]`` uint8 -> ``[T, 3, S, S]``: short side to ``resize``, centre crop, resize to ``img_size``."""
    height, width = frames.shape[1:3]
    factor = resize / min(height, width)
    new_h, new_w = max(resize, round(height * factor)), max(resize, round(width * factor))
    top, left = (new_h - resize) // 2, (new_w - resize) // 2
    out = []
    for frame in frames:
        square = _resize(frame, new_w, new_h)[top:top + resize, left:left + resize]
        out.append(_resize(square, img_size, img_size) if img_size != resize else square)
    return _to_tensor(out)
