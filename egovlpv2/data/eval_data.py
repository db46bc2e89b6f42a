"""Readers of the evaluation shards: deterministic, in written order, frames at segment centres.

A sample that fails to decode raises SampleError naming it: evaluation must cover every sample that
the manifest lists, so nothing is skipped silently here.
"""
from __future__ import annotations

import json
from typing import Iterator

import torch

from egovlpv2.data.config import DataConfig
from egovlpv2.data.pipeline import frames_member
from egovlpv2.data.sampling import segment_indices
from egovlpv2.data.manifest import CLASSES_FILE, read_manifest
from egovlpv2.data.stream import parse_meta, read_tar
from egovlpv2.data.tokenizer import load_tokenizer
from egovlpv2.data.transforms import eval_transform
from egovlpv2.data.video_io import FrameDecoder, SampleError
from egovlpv2.storage import join, read_bytes


def _samples(shard_dir: str, task: str, limit: int | None) -> Iterator[tuple[dict, dict]]:
    manifest = read_manifest(shard_dir)
    if manifest["task"] != task:
        raise ValueError(f"{shard_dir} holds {manifest['task']} shards, not {task}")
    count = 0
    for shard in manifest["shards"]:
        for sample in read_tar(join(shard_dir, shard["name"])):
            if limit is not None and count >= limit:
                return
            count += 1
            yield parse_meta(sample), sample


def _video(decoder: FrameDecoder, cfg: DataConfig, meta: dict, sample: dict, prefix: str = "") -> torch.Tensor:
    try:
        kind, data, count = frames_member(sample, meta, prefix)
        frames = decoder(kind, data, lambda n: segment_indices(n, cfg.num_frames, False), count)
    except SampleError as exc:
        raise SampleError(exc.reason, f"sample {meta.get('id')} {prefix}: {exc}") from exc
    return eval_transform(frames, cfg.img_size, cfg.eval_resize)


def iter_egomcq(shard_dir: str, cfg: DataConfig, limit: int | None = None) -> Iterator[dict]:
    tokenizer = load_tokenizer(cfg.tokenizer)
    decoder = FrameDecoder(cfg.decode_backend, cfg.decode_timeout_s)
    for meta, sample in _samples(shard_dir, "egomcq", limit):
        text = tokenizer(meta["text"], padding="max_length", truncation=True, max_length=cfg.text_max_len,
                         return_tensors="pt")
        yield {"question_id": meta["question_id"], "input_ids": text["input_ids"][0].long(),
               "attention_mask": text["attention_mask"][0].long(),
               "video": torch.stack([_video(decoder, cfg, meta, sample, f"c{i}") for i in range(5)]),
               "answer": int(meta["answer"]), "type": int(meta["type"])}


def iter_epic_mir_clips(shard_dir: str, cfg: DataConfig, limit: int | None = None) -> Iterator[dict]:
    decoder = FrameDecoder(cfg.decode_backend, cfg.decode_timeout_s)
    for meta, sample in _samples(shard_dir, "epic_mir", limit):
        yield {"video": _video(decoder, cfg, meta, sample), "clip_id": meta["id"],
               "narration_id": meta["narration_id"], "video_id": meta["video_id"], "row": int(meta["row"])}


def load_epic_mir_captions(shard_dir: str) -> list[str]:
    return json.loads(read_bytes(join(shard_dir, read_manifest(shard_dir)["captions_file"])))


def epic_mir_relevancy_path(shard_dir: str) -> str:
    return read_manifest(shard_dir)["relevancy"]


def iter_charades_ego(shard_dir: str, cfg: DataConfig, limit: int | None = None) -> Iterator[dict]:
    decoder = FrameDecoder(cfg.decode_backend, cfg.decode_timeout_s)
    num_classes = read_manifest(shard_dir)["num_classes"]
    for meta, sample in _samples(shard_dir, "charades_ego", limit):
        label = torch.zeros(num_classes)
        label[meta["labels"]] = 1.0
        yield {"video": _video(decoder, cfg, meta, sample), "id": meta["video_id"], "label": label}


def load_charades_classes(shard_dir: str) -> list[str]:
    return json.loads(read_bytes(join(shard_dir, read_manifest(shard_dir).get("classes_file", CLASSES_FILE))))


__all__ = ["iter_egomcq", "iter_epic_mir_clips", "load_epic_mir_captions", "epic_mir_relevancy_path",
           "iter_charades_ego", "load_charades_classes"]
