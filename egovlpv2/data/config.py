"""Typed configuration of the data pipeline (shards, frames, text, workers)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class DataConfig:
    # Directory with the webdataset shards and their manifest.json (written by egovlpv2-make-shards).
    shards: str = ""
    # Local Hugging Face tokenizer directory (RoBERTa's, or one built by build_bpe_tokenizer).
    tokenizer: str = ""
    num_frames: int = 4
    img_size: int = 224
    text_max_len: int = 15
    # Anchors per rank; a batch holds 2 * batch_size clips (anchors, then their scene-aware partners).
    batch_size: int = 32
    num_workers: int = 4
    prefetch_factor: int = 2
    num_verbs: int = 118
    num_nouns: int = 582
    # auto: PyAV, torchcodec, decord for up to 8 frames, torchcodec first for more; those installed, each
    # standing in for a sample the one before fails on (the same frames from each; the order is by measured
    # speed, see benchmarks/RESULTS.md).
    decode_backend: Literal["auto", "torchcodec", "decord", "pyav"] = "auto"
    # A sample whose decode takes longer is skipped (decord can hang on broken streams).
    decode_timeout_s: float = 10.0
    # Anchor/partner pairs held per worker for shuffling across scene windows.
    shuffle_buffer: int = 256
    crop_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])
    hflip: bool = True
    seed: int = 0
    # Eval frames: resize to short side eval_resize, centre crop eval_resize, then resize to img_size.
    eval_resize: int = 256
