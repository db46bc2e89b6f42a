"""Planning the shards: which samples go into which shard, in which order, and which part writes it.

Each scene window (same video, same 60 s window) is kept whole and contiguous inside one shard, so the
loader can pair every clip with a scene-aware partner from the samples it is streaming anyway, without
a metadata scan. Windows are shuffled across shards with a fixed seed, so a shard mixes many videos
and the plan is the same for the same inputs. A part of a cluster run is a set of whole shards, so a
window never straddles two parts either.

The EgoClip plan is built from columns (numpy arrays) and hands each shard its rows as byte offsets into
the csv, which the shard's writer reads again: no object per row is held for the whole csv.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass

import numpy as np

from egovlpv2.shards.egoclip_csv import SCENE_WINDOW_S, ClipRow
from egovlpv2.shards.egoclip_table import EgoclipTable, load_rows
from egovlpv2.shards.writer import ClipSpec, SampleSpec


def pack_sizes(sizes: list[int], samples_per_shard: int) -> list[tuple[int, int]]:
    """Fill shards with whole groups in order; a shard closes once it holds ``samples_per_shard``.
    Returns each shard's (first group, end group)."""
    shards, first, count = [], 0, 0
    for g, size in enumerate(sizes):
        if count and count + size > samples_per_shard:
            shards.append((first, g))
            first, count = g, 0
        count += size
    if count:
        shards.append((first, len(sizes)))
    return shards


def egoclip_sample(row: ClipRow) -> SampleSpec:
    return SampleSpec(key=row.key, meta=row.meta(), clips={"": ClipSpec(row.video_uid, row.clip_start, row.clip_end)})


@dataclass(frozen=True)
class CsvRows:
    """A shard's samples as rows of the EgoClip csv, read when the shard is written."""
    path: str
    header: tuple[str, ...]
    offsets: np.ndarray
    numbers: np.ndarray
    num_verbs: int
    num_nouns: int

    def __len__(self) -> int:
        return len(self.offsets)

    def identity(self) -> str:
        """Names these rows of this version of the csv (its size and mtime), without reading them."""
        st = os.stat(self.path)
        head = json.dumps([os.path.abspath(self.path), st.st_size, st.st_mtime_ns, self.header,
                           self.num_verbs, self.num_nouns])
        return hashlib.sha256(head.encode() + self.offsets.tobytes() + self.numbers.tobytes()).hexdigest()

    def sample_specs(self) -> list[SampleSpec]:
        rows = load_rows(self.path, self.header, self.offsets, self.numbers, self.num_verbs, self.num_nouns)
        return [egoclip_sample(r) for r in rows]


@dataclass(frozen=True)
class Planned:
    """A shard's samples given in full (the evaluation tasks: thousands of samples, not millions)."""
    samples: tuple[SampleSpec, ...]

    def __len__(self) -> int:
        return len(self.samples)

    def identity(self) -> str:
        blob = json.dumps([[s.key, s.meta, {k: asdict(c) for k, c in s.clips.items()}] for s in self.samples],
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def sample_specs(self) -> list[SampleSpec]:
        return list(self.samples)


def plan_egoclip(table: EgoclipTable, present: np.ndarray, samples_per_shard: int, seed: int = 0,
                 num_verbs: int = 118, num_nouns: int = 582) -> list[CsvRows]:
    """Shards of the rows whose video is ``present`` (a bool per video of ``table.uids``)."""
    rows = np.flatnonzero(present[table.video]) if len(table) else np.zeros(0, np.int64)
    rank = np.empty(len(table.uids), np.int64)
    rank[np.argsort(np.array(table.uids, dtype=object), kind="stable")] = np.arange(len(table.uids))
    video, start = rank[table.video[rows]], table.start[rows]
    window = np.floor_divide(start, SCENE_WINDOW_S).astype(np.int64)
    order = np.lexsort((table.keys[rows], start, window, video))
    rows, video, window = rows[order], video[order], window[order]
    bounds = np.flatnonzero(np.diff(video) | np.diff(window)) + 1
    groups = np.split(rows, bounds) if len(rows) else []
    random.Random(seed).shuffle(groups)
    shards = []
    for first, end in pack_sizes([len(g) for g in groups], samples_per_shard):
        members = np.concatenate(groups[first:end])
        shards.append(CsvRows(table.path, table.header, table.offsets[members], table.numbers[members],
                              num_verbs, num_nouns))
    return shards


def plan_in_order(samples: list[SampleSpec], samples_per_shard: int) -> list[Planned]:
    """Evaluation shards keep the metadata order (results are matched to rows by position)."""
    return [Planned(tuple(samples[i:i + samples_per_shard])) for i in range(0, len(samples), samples_per_shard)]


def part_of(num_shards: int, part: int, parts: int) -> list[int]:
    """The shard indices that part ``part`` of ``parts`` writes: every ``parts``-th, so parts are disjoint,
    cover the plan, and each gets shards from the whole shuffled plan."""
    return list(range(part, num_shards, parts))
