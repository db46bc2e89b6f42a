"""What a pre-training loader's position depends on: recorded with every checkpoint, compared on resume.

A position (which samples of the epoch each rank and worker used) is only meaningful for the shards it was
taken over and the options that decide the order of the stream. :func:`position_inputs` lists them; a
resume compares the saved list with the current one. The used-sample bitmap depends on the shard set
alone, so any other change is handled exactly by re-dealing the unused rest of the epoch
(egovlpv2.data.elastic_epoch); a changed shard set has no exact continuation and is refused unless
``data.on_shard_change=next_epoch`` asks for the next epoch on the new shards.
"""
from __future__ import annotations

from typing import Optional

from egovlpv2.data.config import DataConfig

SHARDS = "shards"
SHARD_CHANGE_OPTION = "data.on_shard_change=next_epoch"


def position_inputs(cfg: DataConfig, counts: dict[str, int]) -> dict:
    """The shard list with sample counts (manifest order: it defines global sample indices), the batch size,
    the frames, the seed and the sampling options."""
    return {SHARDS: [[name, int(count)] for name, count in counts.items()], "batch_size": cfg.batch_size,
            "num_frames": cfg.num_frames, "seed": cfg.seed, "shuffle_buffer": cfg.shuffle_buffer,
            "crop_scale": [float(x) for x in cfg.crop_scale], "hflip": cfg.hflip, "img_size": cfg.img_size}


def changed_inputs(saved: Optional[dict], now: dict) -> dict[str, tuple]:
    """``{key: (saved, now)}`` for each input that differs; nothing for a checkpoint that recorded none."""
    if not saved:
        return {}
    return {key: (saved.get(key), value) for key, value in now.items() if saved.get(key) != value}


def describe_changes(changes: dict[str, tuple]) -> str:
    """One line: the shards removed, added or recounted, and every other ``key saved -> now``."""
    parts = []
    if SHARDS in changes:
        before, after = (dict(map(tuple, side or [])) for side in changes[SHARDS])
        removed = sorted(set(before) - set(after))
        added = sorted(set(after) - set(before))
        recounted = [f"{n} {before[n]} -> {after[n]} samples" for n in before if n in after and before[n] != after[n]]
        for label, names in (("removed", removed), ("added", added), ("recounted", recounted)):
            if names:
                parts.append(f"shards {label}: {', '.join(names)}")
        if not parts:
            parts.append("shard order changed")
    parts += [f"data.{key} {old} -> {new}" for key, (old, new) in changes.items() if key != SHARDS]
    return "; ".join(parts)
