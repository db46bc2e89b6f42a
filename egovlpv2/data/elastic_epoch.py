"""Elastic resume, the loader's half: the rest of an epoch under a new world size or worker count (the
engine's half, weights and optimizer state at any world size, is egovlpv2.train.elastic_state).

Every loader records which samples it consumed as anchors this epoch (a bitmap over the manifest's samples,
by global index = the shard's offset in the manifest + the sample's place in the shard). When a run resumes
with another number of ranks or of workers per rank, the old ranks' bitmaps are merged into ``base`` (what
the epoch already used) and a new *stage* of the epoch starts; stage 0 is the epoch's ordinary stream.

A stage's plan is a function of ``(base, seed, epoch, world size, workers, batch size)`` alone, so a later
exact resume at the same size rebuilds it: the samples not in ``base``, in the epoch's shard order, are cut
into ``world_size`` equal runs of ``batches * batch_size`` anchors (``batches`` = remaining //
(world_size * batch_size), the same floor as a whole epoch); a rank's run is cut into one chunk per worker,
as many batches as the DataLoader's round-robin asks of it. A worker reads its chunk's shards in order
(a chunk is contiguous, so shards are read once, the partly used ones included), pairs every clip with a
partner from its scene window as in stage 0, keeps the pairs whose anchor is in the chunk and shuffles them
in its buffer. If undecodable samples leave it short, it continues into the next epoch's stream, exactly as
a stage-0 worker does: every rank still yields the same number of batches.
"""
from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass

import numpy as np

from egovlpv2.data.stream import epoch_order


def encode_bitmap(used: np.ndarray) -> str:
    """A bool array as compact ASCII: its length, then packed bits, zlib, base64 (JSON-able, a few bytes per
    1000 samples). The length is kept because packing pads the bits to whole bytes."""
    packed = base64.b64encode(zlib.compress(np.packbits(used.astype(bool)).tobytes())).decode("ascii")
    return f"{used.size}:{packed}"


def decode_bitmap(text: str, total: int) -> np.ndarray:
    """The array of :func:`encode_bitmap`, which must hold exactly ``total`` samples (an older bitmap without
    its length: as many as its whole bytes can hold)."""
    size, _, packed = text.rpartition(":")
    bits = np.unpackbits(np.frombuffer(zlib.decompress(base64.b64decode(packed)), dtype=np.uint8))
    fits = int(size) == total if size else total <= bits.size < total + 8
    if not fits:
        raise ValueError(f"a sample bitmap of {size or bits.size} samples does not fit {total} samples")
    return bits[:total].astype(bool)


def merge_states(states: list[dict], total: int) -> dict:
    """The start of a new stage from the loader states of every rank of the old one (old rank order).

    ``finished`` is set when the old stage had yielded all its batches: the epoch is over, whatever the
    floor to whole global batches left unused (as in an uninterrupted epoch)."""
    if any(s is None for s in states):
        return {"fresh": True}  # saved before the first batch of the run: nothing consumed yet
    missing = [i for i, s in enumerate(states) if "used" not in s]
    if missing:
        raise ValueError(f"the loader states of ranks {missing} record no used samples (written before elastic "
                         "resume existed); resume them at their own world size and worker count")
    epochs, seeds = {s["epoch"] for s in states}, {s["seed"] for s in states}
    if len(epochs) != 1 or len(seeds) != 1:
        raise ValueError(f"the old ranks disagree on the epoch or seed: {sorted(epochs)}, {sorted(seeds)}")
    used = decode_bitmap(states[0]["base"], total) if states[0].get("base") else np.zeros(total, dtype=bool)
    for s in states:
        used |= decode_bitmap(s["used"], total)
    return {"reshard": True, "epoch": epochs.pop(), "seed": seeds.pop(), "stage": int(states[0].get("stage", 0)) + 1,
            "base": encode_bitmap(used), "finished": all(s["batches_done"] >= s["num_batches"] for s in states)}


@dataclass(frozen=True)
class StagePlan:
    stage: int
    num_batches: int  # batches every rank yields in this stage
    chunks: dict[int, list[int]]  # this rank's logical worker -> global sample indices of its anchors, in order


def plan_stage(stage: int, base: np.ndarray, names: list[str], offsets: dict[str, int], counts: dict[str, int],
               seed: int, epoch: int, rank: int, world_size: int, num_workers: int, batch_size: int,
               finished: bool = False) -> StagePlan:
    """This rank's share of the samples that ``base`` has not used (see the module docstring)."""
    runs = []
    for name in epoch_order(names, seed, epoch):
        indices = np.arange(offsets[name], offsets[name] + counts[name])
        runs.append(indices[~base[indices]])
    remaining = np.concatenate(runs) if runs else np.zeros(0, dtype=np.int64)
    num_batches = 0 if finished else len(remaining) // (world_size * batch_size)
    start = rank * num_batches * batch_size
    mine = remaining[start:start + num_batches * batch_size]
    chunks, at = {}, 0
    for w in range(num_workers):
        size = len(range(w, num_batches, num_workers)) * batch_size  # batch j comes from worker j % num_workers
        chunks[w] = mine[at:at + size].tolist()
        at += size
    return StagePlan(stage, num_batches, chunks)


def chunk_shards(chunk: list[int], names: list[str], offsets: dict[str, int]) -> list[str]:
    """The shards holding a chunk's samples, in the chunk's (reading) order."""
    starts = sorted((offsets[n], n) for n in names)
    keys = [s for s, _ in starts]
    out: list[str] = []
    for index in chunk:
        name = starts[int(np.searchsorted(keys, index, side="right")) - 1][1]
        if not out or out[-1] != name:
            out.append(name)
    return out
