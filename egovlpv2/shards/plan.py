"""Planning the pre-training shards: which samples go into which shard, in which order.

Each scene window (same video, same 60 s window) is kept whole and contiguous inside one shard, so the
loader can pair every clip with a scene-aware partner from the samples it is streaming anyway, without
a metadata scan. Windows are shuffled across shards with a fixed seed, so a shard mixes many videos
and the plan is the same for the same inputs.
"""
from __future__ import annotations

import random
from itertools import groupby

from egovlpv2.shards.egoclip_csv import ClipRow
from egovlpv2.shards.writer import ClipSpec, SampleSpec


def pack_groups(groups: list[list[SampleSpec]], samples_per_shard: int) -> list[list[SampleSpec]]:
    """Fill shards with whole groups in order; a shard closes once it holds ``samples_per_shard``."""
    shards, current = [], []
    for group in groups:
        if current and len(current) + len(group) > samples_per_shard:
            shards.append(current)
            current = []
        current.extend(group)
    if current:
        shards.append(current)
    return shards


def egoclip_sample(row: ClipRow) -> SampleSpec:
    return SampleSpec(key=row.key, meta=row.meta(), clips={"": ClipSpec(row.video_uid, row.clip_start, row.clip_end)})


def plan_egoclip(rows: list[ClipRow], samples_per_shard: int, seed: int = 0) -> list[list[SampleSpec]]:
    ordered = sorted(rows, key=lambda r: (r.video_uid, r.window, r.clip_start, r.key))
    groups = [[egoclip_sample(r) for r in members] for _, members in groupby(ordered, key=lambda r: r.group)]
    random.Random(seed).shuffle(groups)
    return pack_groups(groups, samples_per_shard)


def plan_in_order(samples: list[SampleSpec], samples_per_shard: int) -> list[list[SampleSpec]]:
    """Evaluation shards keep the metadata order (results are matched to rows by position)."""
    return [samples[i:i + samples_per_shard] for i in range(0, len(samples), samples_per_shard)]
