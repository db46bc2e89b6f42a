"""Random access to the samples of a shard directory, for the (small) fine-tuning sets.

Fine-tuning sets are small enough (EK-100 MIR train: 67k clips; Charades-Ego: ~3k videos) that the tar
headers are indexed once and samples are read by offset. That gives a map-style dataset, so the usual
epoch-seeded distributed sampler deals every rank the same number of batches and resuming is exact.
"""
from __future__ import annotations

import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from egovlpv2.data.sampling import segment_indices
from egovlpv2.data.shard_writer import read_manifest
from egovlpv2.data.transforms import eval_transform, train_transform
from egovlpv2.data.video_io import FrameDecoder

VIDEO_KINDS = ("mp4", "jpgs")


@dataclass(frozen=True)
class SampleRef:
    shard: str
    key: str
    members: dict  # member suffix ("json", "mp4", ...) -> (offset, size)


def index_shards(shard_dir: str | Path) -> list[SampleRef]:
    """Every sample of the manifest's shards, in written order."""
    manifest = read_manifest(shard_dir)
    refs: list[SampleRef] = []
    for shard in manifest["shards"]:
        path = Path(shard_dir, shard["name"])
        if not path.is_file():
            raise FileNotFoundError(f"shard listed in the manifest is missing: {path}")
        grouped: dict[str, dict] = {}
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                key, _, suffix = member.name.partition(".")
                grouped.setdefault(key, {})[suffix] = (member.offset_data, member.size)
        refs += [SampleRef(str(path), key, members) for key, members in grouped.items()]
    if not refs:
        raise ValueError(f"{shard_dir}: the shards hold no sample")
    return refs


def read_member(ref: SampleRef, suffix: str) -> bytes:
    if suffix not in ref.members:
        raise KeyError(f"sample {ref.key} in {ref.shard} has no {suffix!r} member")
    offset, size = ref.members[suffix]
    with open(ref.shard, "rb") as f:
        f.seek(offset)
        return f.read(size)


class ClipReader:
    """Decodes a sample's clip to uint8 [T, 3, S, S]: random segment frames and augmentation when training."""

    def __init__(self, num_frames: int, img_size: int, train: bool, crop_scale=(0.5, 1.0), hflip: bool = True,
                 decode_backend: str = "auto", decode_timeout_s: float = 10.0, eval_resize: int = 256):
        self.num_frames, self.img_size, self.train = num_frames, img_size, train
        self.crop_scale, self.hflip, self.eval_resize = tuple(crop_scale), hflip, eval_resize
        self.decoder = FrameDecoder(decode_backend, decode_timeout_s)

    def __call__(self, ref: SampleRef, meta: dict, rng: random.Random) -> torch.Tensor:
        kind = next((k for k in VIDEO_KINDS if k in ref.members), None)
        if kind is None:
            raise KeyError(f"sample {ref.key} in {ref.shard} has no video member")
        recorded = meta.get("clips", {}).get(kind, {}).get("num_frames", 0)
        frames: np.ndarray = self.decoder(
            kind, read_member(ref, kind),
            lambda n: segment_indices(n, self.num_frames, self.train, rng if self.train else None), recorded)
        if self.train:
            return train_transform(frames, self.img_size, self.crop_scale, self.hflip, rng)
        return eval_transform(frames, self.img_size, self.eval_resize)


def read_meta(ref: SampleRef) -> dict:
    return json.loads(read_member(ref, "json"))
