"""Typed configuration of the data pipeline (shards, frames, text, workers)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from egovlpv2.config import (ConfigError, NonNegativeInt, PositiveInt, Range, Seconds, Seed)

# Scales of the random resized crop (fractions of the frame's area): [smallest, largest].
CropScale = list[Annotated[float, Range(0, 1, open_low=True)]]


def check_crop_scale(crop_scale: list, where: str) -> None:
    if len(crop_scale) != 2 or crop_scale[0] > crop_scale[1]:
        raise ConfigError(f"{where}={list(crop_scale)} must be [smallest, largest] area fractions in (0, 1]")


@dataclass
class DataConfig:
    # Directory with the webdataset shards and their manifest.json (written by egovlpv2-make-shards).
    shards: str = ""
    # Local Hugging Face tokenizer directory (RoBERTa's, or one built by build_bpe_tokenizer).
    tokenizer: str = ""
    num_frames: PositiveInt = 4
    img_size: PositiveInt = 224
    text_max_len: PositiveInt = 15
    # Anchors per rank; a batch holds 2 * batch_size clips (anchors, then their scene-aware partners).
    batch_size: PositiveInt = 32
    num_workers: NonNegativeInt = 4
    prefetch_factor: PositiveInt = 2
    num_verbs: PositiveInt = 118
    num_nouns: PositiveInt = 582
    # auto: decord, falling back to PyAV when decord fails on a sample.
    decode_backend: Literal["auto", "decord", "pyav"] = "auto"
    # A sample whose decode takes longer is skipped (decord can hang on broken streams).
    decode_timeout_s: Seconds = 10.0
    # Anchor/partner pairs held per worker for shuffling across scene windows.
    shuffle_buffer: PositiveInt = 256
    crop_scale: CropScale = field(default_factory=lambda: [0.5, 1.0])
    hflip: bool = True
    seed: Seed = 0
    # A resume whose shards differ from the checkpoint's (removed, added, recounted): refuse, or start the
    # next epoch on the new shards (the rest of the saved epoch is dropped). See egovlpv2.data.position.
    on_shard_change: Literal["refuse", "next_epoch"] = "refuse"
    # Eval frames: resize to short side eval_resize, centre crop eval_resize, then resize to img_size.
    eval_resize: PositiveInt = 256

    def __post_init__(self) -> None:
        check_crop_scale(self.crop_scale, "data.crop_scale")
