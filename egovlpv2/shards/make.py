"""The make_shards run: check the inputs, plan the task's samples, write this part's shards, merge.

Inputs that cannot be right stop the run within seconds, before any shard is written: a missing video
root, a csv without the EgoClip columns, or a video root holding none of the first videos the metadata
names (a typo in the path). Videos that are missing once the run goes ahead are counted and listed, and
their rows never reach a shard.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from egovlpv2.errors import UserError
from egovlpv2.fileio import atomic_write_json
from egovlpv2.shards import merge as merging
from egovlpv2.shards.egoclip_csv import read_header
from egovlpv2.shards.egoclip_table import first_video_uids, scan_egoclip
from egovlpv2.shards.plan import plan_egoclip, plan_in_order, part_of
from egovlpv2.paths import unsafe_reason
from egovlpv2.shards.transcode import EncodeOptions, video_exists
from egovlpv2.shards.part_lock import exclusive, waiting
from egovlpv2.shards.writer import RECORDS, ShardJob, record_path, remove_partial_files, write_shards

TASKS = ("egoclip", "egomcq", "epic_mir", "charades_ego")
# How many distinct videos, from the start of the metadata, must not all be missing for the run to start.
PROBE_VIDEOS = 300


@dataclass
class ShardRun:
    task: str
    videos: str
    out: str
    csv: str = ""                  # egoclip csv / EK-100 retrieval csv / Charades-Ego csv
    json: str = ""                 # egomcq.json
    sentence_csv: str = ""         # EK-100 MIR unique captions
    relevancy: str = ""            # EK-100 MIR relevancy pickle
    classes: str = ""              # Charades_v1_classes.txt
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    samples_per_shard: int = 0     # 0: the task's default
    chunk_seconds: float = 600.0
    limit: int | None = None
    seed: int = 0
    num_verbs: int = 118
    num_nouns: int = 582
    max_failure_fraction: float = 0.05
    progress: bool = True
    part: int = 0                  # this run writes every parts-th shard from the part-th
    parts: int = 1
    plan_only: bool = False        # plan and summarise (rows, videos found and missing), write no shard
    encode: EncodeOptions = field(default_factory=EncodeOptions)


@dataclass
class Plan:
    sources: list                  # per shard: plan.CsvRows or plan.Planned
    failures: Iterator[dict]       # rows that give no sample, known before writing
    rows_planned: int
    missing_videos: list[str]
    videos: dict                   # referenced, found, hours_referenced, hours_found
    extra: dict                    # task-specific manifest fields


def _no_videos_error(run: ShardRun, uids: list[str], subdirs: tuple[str, ...] = ("",)) -> UserError:
    root = Path(run.videos)
    return UserError(
        f"none of the first {len(uids)} videos named by the metadata is under --videos {root}: expected e.g. "
        f"{root / subdirs[-1] / (uids[0] + '.mp4')} (or chunks {root / uids[0] / '0.mp4'}); check the path")


def _probe(run: ShardRun, uids: list[str], subdirs: tuple[str, ...] = ("",)) -> None:
    uids = [uid for uid in uids if unsafe_reason(run.videos, uid) is None]
    subdirs = tuple(s for s in subdirs if unsafe_reason(run.videos, s) is None) or ("",)
    if uids and not any(video_exists(run.videos, uid, subdirs) for uid in uids[:PROBE_VIDEOS]):
        raise _no_videos_error(run, uids[:PROBE_VIDEOS], subdirs)


def _plan_egoclip(run: ShardRun) -> Plan:
    read_header(run.csv)
    _probe(run, first_video_uids(run.csv, PROBE_VIDEOS))
    table = scan_egoclip(run.csv, run.num_verbs, run.num_nouns, run.limit, run.workers)
    unsafe = [unsafe_reason(run.videos, uid) for uid in table.uids]
    present = np.array([why is None and video_exists(run.videos, uid) for uid, why in zip(table.uids, unsafe)],
                       dtype=bool)
    missing_rows = np.flatnonzero(~present[table.video])

    def failures() -> Iterator[dict]:
        for failure in table.failures:
            yield failure.to_dict()
        for i in missing_rows:
            video = table.video[i]
            yield ({"id": table.keys[i].decode(), "reason": "missing_video", "detail": f"{table.uids[video]}.mp4"}
                   if unsafe[video] is None else {"id": table.keys[i].decode(), "reason": "unsafe_id",
                                                  "detail": unsafe[video]})

    sources = plan_egoclip(table, present, run.samples_per_shard or 1000, run.seed, run.num_verbs, run.num_nouns)
    videos = {"referenced": len(table.uids), "found": int(present.sum()),
              "hours_referenced": round(float(table.video_dur.sum()) / 3600, 3),
              "hours_found": round(float(table.video_dur[present].sum()) / 3600, 3)}
    missing = [uid for uid, ok, why in zip(table.uids, present, unsafe) if not ok and why is None]
    return Plan(sources, failures(), table.rows_read, missing, videos, {})


def _plan_eval(run: ShardRun) -> Plan:
    from egovlpv2.shards import eval_sources

    samples, failures, extra = eval_sources.plan_eval_task(run)
    rows_planned = len(samples) + len(failures)
    subdirs = {}
    for sample in samples:
        for clip in sample.clips.values():
            subdirs.setdefault(clip.uid, clip.subdirs)
    uids = list(subdirs)
    _probe(run, uids, next(iter(subdirs.values()), ("",)))
    unsafe = {}  # a video id or a subfolder (EPIC's participant) that would lead out of the video root
    for uid in uids:
        why = next((r for part in (uid, *subdirs[uid]) if (r := unsafe_reason(run.videos, part))), None)
        if why is not None:
            unsafe[uid] = why
    found = {uid for uid in uids if uid not in unsafe and video_exists(run.videos, uid, subdirs[uid])}
    kept = []
    for sample in samples:
        absent = [c.uid for c in sample.clips.values() if c.uid not in found]
        if absent and absent[0] in unsafe:
            failures.append({"id": sample.key, "reason": "unsafe_id", "detail": unsafe[absent[0]]})
        elif absent:
            failures.append({"id": sample.key, "reason": "missing_video", "detail": f"{absent[0]}.mp4"})
        else:
            kept.append(sample)
    videos = {"referenced": len(uids), "found": len(found), "hours_referenced": None, "hours_found": None}
    return Plan(plan_in_order(kept, run.samples_per_shard or 200), iter(failures), rows_planned,
                [u for u in uids if u not in found and u not in unsafe], videos, extra)


def _check(run: ShardRun) -> None:
    if run.task not in TASKS:
        raise UserError(f"unknown task {run.task!r}; one of {TASKS}")
    if not Path(run.videos).is_dir():
        raise UserError(f"video root not found: --videos {run.videos}")
    if not 0 <= run.part < run.parts:
        raise UserError(f"--part {run.part} is not in [0, --parts {run.parts})")


def make_shards(run: ShardRun) -> tuple[dict | None, bool]:
    """Write this part's shards; once every part is done (always, for one part), write the manifest, the
    failures and the summary. Returns ``(manifest, ok)`` (see ``merge.merge``), or ``(None, True)`` while
    other parts are unfinished (or with ``plan_only``)."""
    _check(run)
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    planned = _plan_egoclip(run) if run.task == "egoclip" else _plan_eval(run)
    jobs = [ShardJob(f"{run.task}-{i:06d}", str(out), run.videos, run.chunk_seconds, run.encode, source)
            for i, source in enumerate(planned.sources)]
    options = {k: v for k, v in asdict(run).items() if k not in ("workers", "progress", "part", "parts", "plan_only")}
    plan = {"task": run.task, "options": options, "shards": [j.name for j in jobs], "hashes": [j.plan_hash() for j in jobs],
            "parts": run.parts, "rows_planned": planned.rows_planned, "samples_planned": sum(len(j.source) for j in jobs),
            "sizes": [len(j.source) for j in jobs], "videos": planned.videos, "extra": planned.extra,
            "failures": planned.failures, "missing_videos": planned.missing_videos}
    plan["fingerprint"] = merging.plan_fingerprint(plan)
    records = out / RECORDS
    records.mkdir(exist_ok=True)
    with exclusive(records / f"part-{run.part}-of-{run.parts}.lock", f"part {run.part} of {run.parts} of {out}"):
        _record_plan(out, plan)
        if run.plan_only:
            atomic_write_json(out / merging.SUMMARY, merging.plan_summary(merging.read_plan(out)), indent=1)
            return None, True
        mine = [jobs[i] for i in part_of(len(jobs), run.part, run.parts)]
        remove_partial_files(out, {j.name for j in mine} if run.parts > 1 else None)
        write_shards(mine, run.workers, run.progress)
    merged = merging.merge(out, run.max_failure_fraction)
    return (None, True) if merged is None else (merged[0], merged[2])


def _record_plan(out: Path, plan: dict) -> None:
    """Record ``plan`` as the directory's plan, unless an unfinished different one is recorded: that one
    belongs to parts still to run (or running), so this part is refused and deletes nothing. A plan that
    replaces another removes the shards that only the old plan had."""
    with waiting(out / RECORDS / "plan.lock"):
        recorded = merging.recorded_plan(out)
        difference = None if recorded is None else merging.plan_difference(recorded, plan)
        if difference is not None:
            finished = merging.shard_records(out, recorded) is not None
            if not finished and not (recorded.get("parts") == 1 and plan["parts"] == 1):
                raise UserError(f"{out} holds an unfinished plan that differs from this part's ({difference}); "
                                f"run every part with the recorded plan's options, or write this plan to another --out")
        if recorded is None or difference is not None:
            names = set(plan["shards"])
            for stale in out.glob(f"{plan['task']}-*.tar"):  # shards of an earlier plan would be read as data
                if stale.stem not in names:
                    stale.unlink(missing_ok=True)
                    record_path(out, stale.stem).unlink(missing_ok=True)
        failures, missing = plan.pop("failures"), plan.pop("missing_videos")
        merging.write_plan(out, plan, failures, missing)
