"""Fine-tuning datasets over task shards: EK-100 MIR (clip, relevancy-sampled caption) and Charades-Ego
(clip, class name). Map-style, with per-(seed, epoch, index) randomness, so any rank/worker split and any
resume point see the same samples and frames.
"""
from __future__ import annotations

import abc
import random
from collections import Counter
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from egovlpv2.data.random_access import ClipDecoder, SampleRef, read_sample
from egovlpv2.data.video_io import SampleError

# A sample that fails to decode is replaced by the next one (a real clip, never a blank) at most this often;
# the failure is counted under its reason.
MAX_RETRIES = 8


class _ShardClipDataset(Dataset, abc.ABC):
    def __init__(self, refs: Sequence[SampleRef], decoder: ClipDecoder, seed: int = 0):
        self.refs, self.decoder, self.seed, self.epoch = list(refs), decoder, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.refs)

    def shard_counts(self) -> dict[str, int]:
        """Samples per shard file, in index order (what the indices of a loader position refer to)."""
        return dict(Counter(str(ref.shard).rsplit("/", 1)[-1] for ref in self.refs))

    @abc.abstractmethod
    def _pair(self, index: int, meta: dict, rng: random.Random) -> tuple[str, float]:
        """The (text, weight) paired with sample ``index``."""

    def __getitem__(self, index: int) -> dict:
        skipped = []
        for attempt in range(MAX_RETRIES):
            i = (index + attempt) % len(self.refs)
            rng = random.Random(hash((self.seed, self.epoch, i)))
            meta, sample = read_sample(self.refs[i])
            try:
                video = self.decoder(meta, sample, rng=rng)
            except SampleError as exc:
                skipped.append(exc.reason)
                continue
            text, weight = self._pair(i, meta, rng)
            return {"video": video, "text": text, "relevancy": weight, "key": self.refs[i].key, "skipped": skipped}
        raise RuntimeError(f"{MAX_RETRIES} consecutive samples from index {index} failed to decode: {skipped}")


class EpicMirTrainSet(_ShardClipDataset):
    """Each clip with one caption drawn uniformly among those whose relevancy to it exceeds `threshold`;
    the pair carries that relevancy as the weight of its ranking margin.

    relevancy: [clips, caption candidates] (row = the sample's `row`); captions: the column texts
    (None for a column whose text is unknown: never drawn).
    """

    def __init__(self, refs, decoder: ClipDecoder, relevancy: np.ndarray, captions: Sequence[Optional[str]],
                 threshold: float = 0.1, seed: int = 0):
        super().__init__(refs, decoder, seed)
        if relevancy.shape[1] != len(captions):
            raise ValueError(f"relevancy has {relevancy.shape[1]} columns but there are {len(captions)} captions")
        self.relevancy, self.captions, self.threshold = relevancy, list(captions), threshold

    def _pair(self, index: int, meta: dict, rng: random.Random) -> tuple[str, float]:
        row = self.relevancy[int(meta["row"])]
        candidates = [int(j) for j in np.flatnonzero(row > self.threshold) if self.captions[j] is not None]
        if not candidates:  # nothing sampleable above the threshold: the clip's own narration
            return meta["text"], 1.0
        column = candidates[rng.randrange(len(candidates))]
        return self.captions[column], float(row[column])


class CharadesEgoTrainSet(_ShardClipDataset):
    """Each video with the name of one of its classes, drawn uniformly. Unlabelled videos are left out."""

    def __init__(self, refs, decoder: ClipDecoder, class_names: Sequence[str], labels: Sequence[Sequence[int]],
                 seed: int = 0):
        kept = [(r, list(lab)) for r, lab in zip(refs, labels) if len(lab)]
        super().__init__([r for r, _ in kept], decoder, seed)
        self.class_names = list(class_names)
        self.labels = [lab for _, lab in kept]

    def _pair(self, index: int, meta: dict, rng: random.Random) -> tuple[str, float]:
        return self.class_names[rng.choice(self.labels[index])], 1.0


class TextCollator:
    """Stacks videos and tokenizes texts (padding to the longest, truncation at `max_length`)."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, items: list[dict]) -> dict:
        enc = self.tokenizer([it["text"] for it in items], padding="longest", truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {"video": torch.stack([it["video"] for it in items]), "input_ids": enc["input_ids"],
                "attention_mask": enc["attention_mask"],
                "relevancy": torch.tensor([it["relevancy"] for it in items], dtype=torch.float32),
                "sample_id": [it["key"] for it in items],
                "skipped": Counter(reason for it in items for reason in it["skipped"])}
