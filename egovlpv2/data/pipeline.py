"""The pre-training loader: webdataset shards -> anchor/partner batches, equal in number on every rank.

Per DataLoader worker: read the worker's shards (an epoch-seeded order, dealt over ranks then workers,
continuing into the next epoch's order so no rank runs dry), pair each clip with a scene-aware partner
from its window (stored contiguously at shard time), shuffle pairs, decode, augment, tokenize, batch.
The main process stops after ``batches_per_epoch`` batches and tracks how many pairs each worker consumed.

Every worker's stream is a function of (seed, epoch, rank, worker) alone: pairing and shuffling use metadata
only, and each pair's frame sampling and augmentation draw from their own generator keyed by the pair's
place in the stream. Resume therefore replays a worker's stream from the epoch start, passing over the
consumed pairs without decoding them, and rotates the DataLoader's worker ids so that its round-robin
continues with the worker that the uninterrupted run would have asked next: the batches are identical.
A resume with another world size or worker count starts a new *stage* of the epoch instead: the samples no
rank used yet are dealt over the new ranks and workers (egovlpv2.data.elastic_epoch).
"""
from __future__ import annotations

import random
import tarfile
from collections import Counter
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from egovlpv2.data.config import DataConfig
from egovlpv2.data.elastic_epoch import StagePlan, chunk_shards, decode_bitmap, encode_bitmap, merge_states, plan_stage
from egovlpv2.data.sample_schema import check_clips, check_pretrain_meta
from egovlpv2.data.sampling import segment_indices
from egovlpv2.data.manifest import ShardManifest
from egovlpv2.data.stream import (EPOCH_END, pair_window, parse_meta, read_tar, shard_epoch, shuffle_buffer,
                                  worker_shard)
from egovlpv2.data.tokenizer import load_tokenizer
from egovlpv2.data.transforms import train_transform
from egovlpv2.data.video_io import FrameDecoder, SampleError
from egovlpv2.dist.signals import ignore_stop_signals
from egovlpv2.storage import StorageError, join

# A worker that skips this many samples in a row is reading broken data; fail loudly instead of spinning.
MAX_CONSECUTIVE_SKIPS = 1000
# Time allowed to pass over one consumed pair when a resume replays a worker's stream (tar reads and
# metadata only, no decoding: milliseconds on a slow file system), and for everything in a batch but decoding.
REPLAY_S_PER_PAIR = 0.05
BATCH_MARGIN_S = 60.0


def loader_timeout_s(cfg: DataConfig, replay_pairs: int = 0) -> float:
    """How long the main process waits for one batch from a worker before failing.

    Derived from the decode bound rather than fixed: a batch of ``batch_size`` pairs may need two decodes
    per pair, each allowed ``decode_timeout_s``. A worker's first batch after a resume also replays the
    ``replay_pairs`` pairs consumed before it, which late in an epoch can take longer than a batch.
    """
    return 2 * cfg.batch_size * cfg.decode_timeout_s + BATCH_MARGIN_S + REPLAY_S_PER_PAIR * replay_pairs


def pretrain_manifest(cfg: DataConfig) -> ShardManifest:
    """The manifest of ``cfg.shards``, which must hold pre-training shards: read once per process."""
    return ShardManifest.read(cfg.shards).require_task("egoclip", "pre-training (egoclip)")


def shard_offsets(counts: dict[str, int]) -> dict[str, int]:
    """Global index of each shard's first sample."""
    offsets, at = {}, 0
    for name, count in counts.items():
        offsets[name], at = at, at + count
    return offsets


def batches_per_epoch(manifest: ShardManifest, cfg: DataConfig, world_size: int) -> int:
    """Batches every rank yields per epoch: all samples once as anchors, floored to whole global batches."""
    total = manifest.total_samples
    count = total // (world_size * cfg.batch_size)
    if count == 0:
        raise ValueError(f"{total} samples make no full batch of {cfg.batch_size} anchors on each of {world_size} ranks")
    return count


def frames_member(sample: dict, meta: dict, prefix: str = "") -> tuple[str, bytes, int]:
    """(kind, bytes, recorded frame count) of the clip member ``{prefix.}mp4`` or ``{prefix.}jpgs``."""
    for kind in ("mp4", "jpgs"):
        name = f"{prefix}.{kind}" if prefix else kind
        if name in sample:
            return kind, sample[name], check_clips(meta).get(name, {}).get("num_frames", 0)
    raise SampleError("missing_video", f"no {prefix + '.' if prefix else ''}mp4 or jpgs member")


class PretrainStream(IterableDataset):
    """Endless stream of batches for one rank; each DataLoader worker reads its own shards."""

    def __init__(self, cfg: DataConfig, counts: dict[str, int], rank: int, world_size: int, epoch: int,
                 consumed: dict[int, int], rotation: int, plan: Optional[StagePlan] = None):
        """``consumed``: pairs each (logical) worker already used; DataLoader worker i plays logical worker
        ``(i + rotation) % num_workers``, so the round-robin resumes with the worker due next. ``plan``: the
        anchors of a later stage of the epoch (egovlpv2.data.elastic_epoch), None for the epoch's own stream.
        ``counts``: samples per non-empty shard, in the manifest's order."""
        self.cfg, self.names, self.rank, self.world_size, self.epoch = cfg, list(counts), rank, world_size, epoch
        self.consumed, self.rotation, self.plan = consumed, rotation, plan
        self.offsets = shard_offsets(counts)

    def _shard(self, name: str, skips: Counter) -> Iterator:
        """(meta, sample) of one shard, each sample tagged with its global index; returns how many it read."""
        got = 0
        try:
            for sample in read_tar(join(self.cfg.shards, name)):
                sample["__index__"] = self.offsets[name] + got
                got += 1
                try:
                    yield parse_meta(sample), sample
                except ValueError:
                    skips["bad_json"] += 1
        except (FileNotFoundError, StorageError):
            raise  # a listed shard is gone or unreachable: stop rather than run a shorter epoch
        except (OSError, ValueError, EOFError, tarfile.TarError):  # truncated or corrupt tar
            skips["shard_read_error"] += 1
        return got

    def _samples(self, worker: int, num_workers: int, skips: Counter, epoch: int) -> Iterator:
        """(meta, sample) in read order from the epoch start; None ends a shard, ``EPOCH_END`` an epoch's shards."""
        empty_run = 0
        for k in range(1 << 62):
            got = yield from self._shard(worker_shard(self.names, self.cfg.seed, epoch, worker, num_workers, k), skips)
            empty_run = 0 if got else empty_run + 1
            if empty_run > len(self.names):
                raise RuntimeError(f"a full pass over {len(self.names)} shards gave no samples ({dict(skips)})")
            yield None
            if shard_epoch(len(self.names), epoch, worker, num_workers, k + 1) != \
                    shard_epoch(len(self.names), epoch, worker, num_workers, k):
                yield EPOCH_END

    def _pairs(self, samples: Iterator, rng: random.Random, skips: Counter) -> Iterator:
        window, group = [], None
        for item in samples:
            if item is None or item is EPOCH_END or item[0].get("group") != group:
                yield from pair_window(window, rng, skips) if window else ()
                window, group = [], None
            if item is EPOCH_END:
                yield item
            elif item is not None:
                window.append(item)
                group = item[0].get("group")

    def pair_stream(self, w: int, num_w: int, skips: Counter, epoch: Optional[int] = None) -> Iterator:
        """Shuffled ((meta, sample), (meta, sample)) anchor/partner pairs of logical worker ``w`` of ``num_w``
        from the epoch start: a function of (seed, epoch, rank, w) and the shards' metadata only."""
        epoch = self.epoch if epoch is None else epoch
        rng = random.Random(f"egovlpv2-loader:{self.cfg.seed}:{epoch}:{self.rank}:{w}")
        samples = self._samples(self.rank * num_w + w, self.world_size * num_w, skips, epoch)
        return shuffle_buffer(self._pairs(samples, rng, skips), self.cfg.shuffle_buffer, rng)

    def stage_pair_stream(self, w: int, num_w: int, skips: Counter) -> Iterator:
        """Pairs of logical worker ``w`` in a later stage of the epoch: its chunk's anchors (partners drawn from
        their scene windows as in stage 0), shuffled, then the next epoch's stream (egovlpv2.data.elastic_epoch)."""
        chunk = self.plan.chunks.get(w, [])
        wanted = set(chunk)
        rng = random.Random(f"egovlpv2-loader:{self.cfg.seed}:{self.epoch}.{self.plan.stage}:{self.rank}:{w}")

        def samples():
            for name in chunk_shards(chunk, self.names, self.offsets):
                yield from self._shard(name, skips)
                yield None

        pairing: Counter = Counter()  # partner_is_self is counted for this chunk's anchors only
        for pair in shuffle_buffer((p for p in self._pairs(samples(), rng, pairing) if p[0][1]["__index__"] in wanted),
                                   self.cfg.shuffle_buffer, rng):
            if pair[0] is pair[1]:
                skips["partner_is_self"] += 1
            yield pair
        yield from self.pair_stream(w, num_w, skips, self.epoch + 1)

    def _clip(self, meta: dict, sample: dict, decoder: FrameDecoder, rng: random.Random, out: torch.Tensor) -> None:
        """Decode and augment one clip into ``out`` (its row of the batch)."""
        cfg = self.cfg
        check_pretrain_meta(meta, cfg.num_verbs, cfg.num_nouns)
        kind, data, count = frames_member(sample, meta)
        frames = decoder(kind, data, lambda n: segment_indices(n, cfg.num_frames, True, rng), count)
        train_transform(frames, cfg.img_size, tuple(cfg.crop_scale), cfg.hflip, rng, out=out)

    def _video_batch(self, in_worker: bool) -> torch.Tensor:
        """The batch's clips, anchors in rows 0..B-1 and partners in B..2B-1, filled in place. In a worker it
        lives in shared memory from the start, so handing it to the main process copies nothing."""
        cfg = self.cfg
        video = torch.empty(2 * cfg.batch_size, cfg.num_frames, 3, cfg.img_size, cfg.img_size, dtype=torch.uint8)
        return video.share_memory_() if in_worker else video

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        i, num_w = (info.id, info.num_workers) if info else (0, 1)
        w = (i + self.rotation) % num_w
        seed, epoch = self.cfg.seed, self.epoch if self.plan is None else f"{self.epoch}.{self.plan.stage}"
        decoder = FrameDecoder(self.cfg.decode_backend, self.cfg.decode_timeout_s, self.cfg.num_frames)
        tokenizer = load_tokenizer(self.cfg.tokenizer)
        skips: Counter = Counter()
        replay = self.consumed.get(w, 0)
        items, run, used, video = [], 0, [], None
        pairs = self.pair_stream(w, num_w, skips) if self.plan is None else self.stage_pair_stream(w, num_w, skips)
        for n, ((meta_a, sample_a), (meta_p, sample_p)) in enumerate(pairs):
            if n < replay:  # consumed before the resume: only its tar reading and metadata are repeated
                if n == replay - 1:
                    skips.clear()  # counted up to here already (the saved state holds them)
                continue
            used.append(sample_a["__index__"])
            clip_rng = random.Random(f"egovlpv2-clip:{seed}:{epoch}:{self.rank}:{w}:{n}")
            video = self._video_batch(info is not None) if video is None else video
            anchor, partner = video[len(items)], video[self.cfg.batch_size + len(items)]
            try:
                self._clip(meta_a, sample_a, decoder, clip_rng, anchor)
                if sample_p is sample_a:
                    partner.copy_(anchor)
                else:
                    self._clip(meta_p, sample_p, decoder, clip_rng, partner)
            except SampleError as exc:  # the pair's rows are overwritten by the next pair
                skips[exc.reason] += 1
                run += 1
                if run >= MAX_CONSECUTIVE_SKIPS:
                    raise RuntimeError(f"{run} consecutive bad samples in {self.cfg.shards}: {dict(skips)}") from exc
                continue
            run = 0
            items.append((meta_a, meta_p))
            if len(items) == self.cfg.batch_size:
                state = {"worker": w, "consumed": n + 1, "skips": dict(skips), "used": used}
                yield self._collate(items, video, tokenizer, state)
                items, used, video = [], [], None

    def _collate(self, items: list, video: torch.Tensor, tokenizer, state: dict) -> dict:
        """Anchors in rows 0..B-1, their partners in rows B..2B-1 (``video`` is already filled so)."""
        cfg = self.cfg
        metas = [a for a, _ in items] + [p for _, p in items]
        text = tokenizer([m["text"] for m in metas], padding="max_length", truncation=True,
                         max_length=cfg.text_max_len, return_tensors="pt")
        verb = torch.zeros(len(metas), cfg.num_verbs)
        noun = torch.zeros(len(metas), cfg.num_nouns)
        for i, m in enumerate(metas):
            verb[i, m.get("verb", [])] = 1.0
            noun[i, m.get("noun", [])] = 1.0
        return {"video": video, "input_ids": text["input_ids"].long(),
                "attention_mask": text["attention_mask"].long(), "verb": verb, "noun": noun,
                "sample_id": [m["id"] for m in metas], "_state": state}


class PretrainLoader:
    """Yields exactly ``len(self)`` batches for one rank and one epoch; see docs/architecture.md."""

    def __init__(self, cfg: DataConfig, manifest: ShardManifest, rank: int, world_size: int, epoch: int,
                 resume_state: dict | None = None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.cfg, self.rank, self.world_size, self.epoch = cfg, rank, world_size, epoch
        self.counts = manifest.shard_counts()
        self.names, total = list(self.counts), manifest.total_samples
        self.num_batches = batches_per_epoch(manifest, cfg, world_size)
        self.num_workers = max(1, cfg.num_workers)
        self.batches_done = 0
        self.consumed: dict[int, int] = {}  # pairs used (decoded or skipped) per worker, from the stage start
        self.used = np.zeros(total, dtype=bool)  # anchors this rank used in this stage, by global sample index
        self.base: Optional[str] = None  # encoded bitmap of what earlier stages of the epoch used (all ranks)
        self.plan: Optional[StagePlan] = None  # None: stage 0, the epoch's own stream
        self._base_skips: Counter = Counter()
        self._worker_skips: dict[int, dict] = {}
        if resume_state is not None and not resume_state.get("fresh"):
            self._load(resume_state)

    def _load(self, state: dict) -> None:
        if state.get("reshard"):  # the first batch of a new stage (egovlpv2.data.elastic_epoch.merge_states)
            expected = {"epoch": self.epoch, "seed": self.cfg.seed}
        else:
            expected = {"epoch": self.epoch, "world_size": self.world_size, "num_workers": self.num_workers,
                        "seed": self.cfg.seed, "rank": self.rank}
        wrong = {k: (state.get(k), v) for k, v in expected.items() if state.get(k) != v}
        if wrong:
            raise ValueError(f"loader resume state does not fit this loader (saved, now): {wrong}")
        if state.get("stage", 0) > 0:
            self.base = state["base"]
            self.plan = plan_stage(state["stage"], decode_bitmap(self.base, len(self.used)), self.names,
                                   shard_offsets(self.counts), self.counts, self.cfg.seed,
                                   self.epoch, self.rank, self.world_size, self.num_workers, self.cfg.batch_size,
                                   bool(state.get("finished")))
            self.num_batches = self.plan.num_batches
        if state.get("reshard"):
            return
        if "consumed" not in state:
            raise ValueError("loader resume state lacks 'consumed' (saved by an older loader that resumed inexactly)")
        self.batches_done = int(state["batches_done"])
        self.consumed = {int(w): int(n) for w, n in state["consumed"].items()}
        self._base_skips = Counter(state.get("skips", {}))
        if "used" in state:
            self.used = decode_bitmap(state["used"], len(self.used))

    def __len__(self) -> int:
        return self.num_batches

    def skip_counts(self) -> dict[str, int]:
        """Samples skipped on this rank so far, by reason (``partner_is_self`` counts pairs, not skips)."""
        total = Counter(self._base_skips)
        for counts in self._worker_skips.values():
            total.update(counts)
        return dict(total)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "world_size": self.world_size, "num_workers": self.num_workers,
                "seed": self.cfg.seed, "rank": self.rank, "batches_done": self.batches_done,
                "num_batches": self.num_batches, "consumed": {str(w): n for w, n in self.consumed.items()},
                "skips": self.skip_counts(), "used": encode_bitmap(self.used),
                "stage": self.plan.stage if self.plan else 0, "base": self.base}

    def __iter__(self) -> Iterator[dict]:
        if self.batches_done >= self.num_batches:
            return
        # Skip counts restart per worker in a new pass: fold the finished pass into the base.
        self._base_skips, self._worker_skips = Counter(self.skip_counts()), {}
        # Batch j of a DataLoader over endless IterableDataset workers comes from worker j % num_workers.
        dataset = PretrainStream(self.cfg, self.counts, self.rank, self.world_size, self.epoch,
                                 dict(self.consumed), self.batches_done % self.num_workers, self.plan)
        workers = self.cfg.num_workers
        # Its own generator: starting an iterator draws a base seed, which must not advance the global torch
        # RNG (a resumed run starts its iterator mid-epoch, so dropout would drift from the uninterrupted run).
        loader = DataLoader(dataset, batch_size=None, num_workers=workers, generator=torch.Generator().manual_seed(0),
                            worker_init_fn=ignore_stop_signals,
                            prefetch_factor=self.cfg.prefetch_factor if workers > 0 else None,
                            timeout=loader_timeout_s(self.cfg, max(self.consumed.values(), default=0))
                            if workers > 0 else 0)
        iterator = iter(loader)
        try:
            while self.batches_done < self.num_batches:
                try:
                    batch = next(iterator)
                except StorageError as exc:  # a worker's: torch prefixes the message with the worker's traceback
                    raise StorageError(str(exc).rstrip().splitlines()[-1].split("StorageError: ", 1)[-1]) from exc
                state = batch.pop("_state")
                self.consumed[state["worker"]] = state["consumed"]
                self._worker_skips[state["worker"]] = state["skips"]
                self.used[state["used"]] = True
                self.batches_done += 1
                yield batch
        finally:
            del iterator  # stops the endless workers


def build_pretrain_loader(cfg: DataConfig, rank: int, world_size: int, epoch: int, resume_state: dict | None = None,
                          manifest: ShardManifest | None = None) -> PretrainLoader:
    """The loader the trainer iterates once per epoch (``len()`` batches, the same on every rank).

    ``manifest``: that of ``cfg.shards`` where the caller has read it (a training run reads it once)."""
    return PretrainLoader(cfg, manifest or pretrain_manifest(cfg), rank, world_size, epoch, resume_state)


def reshard_loader_states(cfg: DataConfig, manifest: ShardManifest, states: list[dict]) -> dict:
    """A resume state for any rank of a new world size or worker count, from the states of every old rank
    (old rank order): the loader built from it yields the samples of the epoch that none of them used. The new
    stage follows ``cfg``'s seed and batch size, which may differ from the old ones (the bitmap depends on neither)."""
    merged = merge_states(states, manifest.total_samples)
    return {**merged, "seed": cfg.seed} if merged.get("reshard") else merged
