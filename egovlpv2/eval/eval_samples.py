"""The reader of the evaluation shards: map-style datasets, dealt to ranks without duplicates.

Each item is `(index, sample)`; frames are the centres of `num_frames` equal segments, uint8
`[T, 3, H, W]` (see docs/architecture.md, "Evaluation data", for each task's fields). Each rank's
DataLoader takes indices rank, rank + world_size, ... so every sample is decoded and scored once, in
worker processes. A shard failure listed in the manifest (a missing or broken video) is an error that
names it, unless the caller allows missing samples (then they are reported in the results).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from egovlpv2.data.manifest import ShardManifest, read_manifest
from egovlpv2.data.random_access import ClipDecoder, index_shards, read_sample
from egovlpv2.dist.signals import ignore_stop_signals
from egovlpv2.errors import UserError
from egovlpv2.eval.runtime import EvalContext, share_indices
from egovlpv2.storage import join, open_read

NUM_CHOICES = 5


class MissingSamplesError(UserError, RuntimeError):
    """The shards lack samples of the benchmark (failed at shard time)."""


def check_missing_samples(shard_dir: str | Path | ShardManifest, allow_missing: bool) -> int:
    """The number of benchmark rows that failed at shard time; an error naming them unless `allow_missing`.

    Only the error reads the first lines of the failures file; a complete benchmark never opens it."""
    shards = ShardManifest.read(shard_dir)
    manifest, shard_dir = shards.fields, shards.location
    failed = manifest.get("rows_failed", 0)
    if failed and not allow_missing:
        with io.TextIOWrapper(open_read(join(str(shard_dir), manifest["failures_file"])), encoding="utf-8") as f:
            first = [json.loads(line) for line, _ in zip(f, range(20))]
        listed = "; ".join(f"{x.get('id')}: {x.get('detail') or x.get('reason')}" for x in first)
        more = f" (and {failed - len(first)} more)" if failed > len(first) else ""
        raise MissingSamplesError(
            f"{shard_dir}: {failed} benchmark samples are missing from the shards, so the figures would "
            f"not be comparable: {listed}{more}. Fix the sources and rerun make_shards.py (finished shards are "
            f"kept), or pass --allow-missing to evaluate without them.")
    return failed


class EvalSamples(Dataset):
    def __init__(self, task: str, shard_dir: str | Path, data_cfg, tokenizer=None, limit: int | None = None):
        self.task, self.cfg, self.tokenizer = task, data_cfg, tokenizer
        self.refs = index_shards(shard_dir, task)[:limit]
        self.decode = ClipDecoder.from_config(data_cfg)
        if task == "egomcq" and tokenizer is None:
            raise ValueError("EgoMCQ samples need a tokenizer")
        self.num_classes = read_manifest(shard_dir).get("num_classes") if task == "charades_ego" else None

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> tuple[int, dict]:
        """`index` < 0 reads sample -1 - index as a padding repeat, returned with index -1."""
        real = index if index >= 0 else -1 - index
        meta, sample = read_sample(self.refs[real])
        if self.task == "egomcq":
            text = self.tokenizer(meta["text"], padding="max_length", truncation=True,
                                  max_length=self.cfg.text_max_len, return_tensors="pt")
            item = {"question_id": meta["question_id"], "input_ids": text["input_ids"][0].long(),
                    "attention_mask": text["attention_mask"][0].long(),
                    "video": torch.stack([self.decode(meta, sample, f"c{i}") for i in range(NUM_CHOICES)]),
                    "answer": int(meta["answer"]), "type": int(meta["type"])}
        elif self.task == "epic_mir":
            item = {"video": self.decode(meta, sample), "clip_id": meta["id"], "narration_id": meta["narration_id"],
                    "video_id": meta["video_id"], "row": int(meta["row"])}
        else:
            label = torch.zeros(self.num_classes)
            label[meta["labels"]] = 1.0
            item = {"video": self.decode(meta, sample), "id": meta["video_id"], "label": label}
        return (index if index >= 0 else -1), item


def _as_list(items):
    return items


def rank_batches(dataset: Dataset, ctx: EvalContext, batch_size: int, num_workers: int) -> DataLoader:
    """Batches (lists of `(index, sample)`) of this rank's share (see `runtime.share_indices`)."""
    indices = share_indices(len(dataset), ctx)
    return DataLoader(dataset, batch_size=batch_size, sampler=indices, num_workers=num_workers,
                      collate_fn=_as_list, persistent_workers=False, worker_init_fn=ignore_stop_signals,
                      prefetch_factor=4 if num_workers else None)
