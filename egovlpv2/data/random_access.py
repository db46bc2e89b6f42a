"""Random access to the samples of a shard directory, for fine-tuning and evaluation.

The tar headers are indexed once and samples are read by offset. That makes map-style datasets, so
DataLoader workers decode in parallel, each rank takes exactly its own samples (no rank decodes what it
does not score), and fine-tuning gets epoch-seeded shuffles with exact resume.
"""
from __future__ import annotations

import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

import torch

from egovlpv2.data.manifest import ShardManifest
from egovlpv2.data.pipeline import frames_member
from egovlpv2.data.sample_schema import check_clips
from egovlpv2.data.sampling import segment_indices
from egovlpv2.data.stream import parse_meta
from egovlpv2.data.transforms import eval_transform, train_transform
from egovlpv2.data.video_io import FrameDecoder, SampleError
from egovlpv2.storage import exists, open_read, read_range


@dataclass(frozen=True)
class SampleRef:
    shard: str
    key: str
    members: dict  # member suffix ("json", "mp4", "c0.mp4", ...) -> (offset, size)


def index_shards(shard_dir: str | Path | ShardManifest, task: str) -> list[SampleRef]:
    """Every sample of the manifest's shards, in written order; the manifest must be of `task`."""
    manifest = ShardManifest.read(shard_dir).require_task(task)
    shard_dir = manifest.location
    refs: list[SampleRef] = []
    for shard in manifest.fields["shards"]:
        path = manifest.path(shard["name"])
        if not exists(path):
            raise FileNotFoundError(f"shard listed in {shard_dir}/manifest.json is missing: {path}")
        grouped: dict[str, dict] = {}
        with open_read(path) as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for member in tar:
                key, _, suffix = member.name.partition(".")
                grouped.setdefault(key, {})[suffix] = (member.offset_data, member.size)
        if len(grouped) != shard["samples"]:
            raise ValueError(f"{path} holds {len(grouped)} samples but the manifest lists {shard['samples']}")
        refs += [SampleRef(path, key, members) for key, members in grouped.items()]
    return refs


def read_sample(ref: SampleRef, members: tuple[str, ...] | None = None) -> tuple[dict, dict]:
    """(meta, {member suffix: bytes}) of one sample; `members` limits what is read (the json always is)."""
    sample = {}
    wanted = None if members is None else set(members) | {"json"}
    for suffix, (offset, size) in ref.members.items():
        if wanted is None or suffix in wanted:
            sample[suffix] = read_range(ref.shard, offset, size)
    return parse_meta(sample), sample


class ClipDecoder:
    """A sample's clip (or its `prefix` member, e.g. an EgoMCQ choice) as uint8 [T, 3, S, S].

    Eval: frames at segment centres, eval transform. Train: a random frame per segment, one random
    resized crop and flip for the whole clip.
    """

    def __init__(self, num_frames: int, img_size: int, train: bool = False, crop_scale=(0.5, 1.0),
                 hflip: bool = True, decode_backend: str = "auto", decode_timeout_s: float = 10.0,
                 eval_resize: int = 256):
        self.num_frames, self.img_size, self.train = num_frames, img_size, train
        self.crop_scale, self.hflip, self.eval_resize = tuple(crop_scale), hflip, eval_resize
        self.decoder = FrameDecoder(decode_backend, decode_timeout_s, num_frames)

    @classmethod
    def from_config(cls, cfg, train: bool = False) -> "ClipDecoder":
        """From a DataConfig (or any config with the same field names)."""
        return cls(cfg.num_frames, cfg.img_size, train, cfg.crop_scale, cfg.hflip, cfg.decode_backend,
                   cfg.decode_timeout_s, cfg.eval_resize)

    def __call__(self, meta: dict, sample: dict, prefix: str = "", rng: random.Random | None = None) -> torch.Tensor:
        if prefix:
            sample = {k[len(prefix) + 1:]: v for k, v in sample.items() if k.startswith(prefix + ".")}
            meta = {"id": meta.get("id"), "clips": {k[len(prefix) + 1:]: v for k, v in check_clips(meta).items()
                              if k.startswith(prefix + ".")}}
        kind, data, count = frames_member(sample, meta)
        choose = (lambda n: segment_indices(n, self.num_frames, True, rng)) if self.train else (
            lambda n: segment_indices(n, self.num_frames, False))
        try:
            frames = self.decoder(kind, data, choose, count)
        except SampleError as exc:
            raise SampleError(exc.reason, f"sample {meta.get('id', '?')} {prefix}: {exc}") from exc
        if self.train:
            return train_transform(frames, self.img_size, self.crop_scale, self.hflip, rng)
        return eval_transform(frames, self.img_size, self.eval_resize)
