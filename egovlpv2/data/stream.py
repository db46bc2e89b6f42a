"""Streaming stages shared by the loaders: shard order, tar reading, scene-window pairing, shuffling."""
from __future__ import annotations

import json
import random
from collections import Counter
from typing import Iterator

from webdataset.tariterators import group_by_keys, tar_file_iterator

from egovlpv2.storage import open_read


def epoch_order(names: list[str], seed: int, epoch: int) -> list[str]:
    """The shard order of ``epoch``: a permutation seeded by (seed, epoch), the same on every rank."""
    order = sorted(names)
    random.Random(f"egovlpv2-shards:{seed}:{epoch}").shuffle(order)
    return order


def worker_shard(names: list[str], seed: int, epoch: int, worker: int, num_workers: int, k: int) -> str:
    """The ``k``-th shard of global worker ``worker`` (of ``num_workers`` over all ranks).

    The epoch orders are concatenated into one endless sequence (epoch, epoch + 1, ...) and dealt out
    round-robin, so every worker always has a next shard, however unevenly the shards divide."""
    index = worker + k * num_workers
    return epoch_order(names, seed, shard_epoch(len(names), epoch, worker, num_workers, k))[index % len(names)]


def shard_epoch(num_shards: int, epoch: int, worker: int, num_workers: int, k: int) -> int:
    """The epoch whose order the ``k``-th shard of global worker ``worker`` comes from (see ``worker_shard``)."""
    return epoch + (worker + k * num_workers) // num_shards


def read_tar(path: str) -> Iterator[dict]:
    """Samples of one tar shard (a path or URL, streamed) as ``{"__key__": key, ext: bytes, ...}``, in stored order."""
    with open_read(path) as f:
        yield from group_by_keys(dict(member, __url__=path) for member in tar_file_iterator(f))


def parse_meta(sample: dict) -> dict:
    """The sample's JSON; raises ValueError (reason ``bad_json``) when missing or malformed."""
    try:
        meta = json.loads(sample["json"])
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"bad sample json: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError("sample json is not an object")
    return meta


def pair_window(window: list[tuple[dict, dict]], rng: random.Random, skips: Counter) -> list[tuple]:
    """Pair every clip of one scene window with a partner drawn uniformly from the window's other clips.

    A window with a single clip pairs it with itself (counted as ``partner_is_self``)."""
    pairs = []
    for i, anchor in enumerate(window):
        if len(window) == 1:
            skips["partner_is_self"] += 1
            partner = anchor
        else:
            j = rng.randrange(len(window) - 1)
            partner = window[j + (j >= i)]
        pairs.append((anchor, partner))
    return pairs


# Marks an epoch boundary in a stream: everything before it leaves the shuffle buffer before anything after.
EPOCH_END = object()


def shuffle_buffer(items: Iterator, size: int, rng: random.Random) -> Iterator:
    """Random order within a sliding buffer of ``size`` items; ``EPOCH_END`` in ``items`` drains the buffer
    (so one epoch's items are not held back behind the next epoch's)."""
    buf = []
    for item in items:
        if item is EPOCH_END:
            rng.shuffle(buf)
            yield from buf
            buf = []
            continue
        buf.append(item)
        if len(buf) >= size:
            i = rng.randrange(len(buf))
            buf[i], buf[-1] = buf[-1], buf[i]
            yield buf.pop()
    rng.shuffle(buf)
    yield from buf
