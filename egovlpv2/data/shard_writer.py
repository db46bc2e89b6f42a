"""Writing webdataset shards from planned samples: parallel, resumable, deterministic.

A plan is a list of shards, each a list of SampleSpec. Every shard is written by one worker process to
``{name}.tar`` (via a temporary file) with a sidecar ``{name}.json`` holding its sample count, bytes
and failures; a shard whose sidecar matches the plan is kept on a rerun. The manifest gathers them.
"""
from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from egovlpv2.data.source_reader import SourceReader
from egovlpv2.data.transcode import ClipError, EncodeOptions, cut_clip, video_segments
from egovlpv2.errors import MissingPathError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ClipSpec:
    uid: str                       # video id, resolved under the video root
    start: float
    end: float | None              # None: to the end of the video
    subdirs: tuple[str, ...] = ("",)


@dataclass(slots=True)
class SampleSpec:
    key: str                       # sanitised: no dots
    meta: dict                     # stored as the sample's JSON, with the clips' timing added under "clips"
    clips: dict[str, ClipSpec] = field(default_factory=dict)  # member prefix ("" for the main clip) -> source


@dataclass(frozen=True)
class ShardJob:
    name: str
    out_dir: str
    video_root: str
    chunk_s: float
    opts: EncodeOptions
    samples: tuple[SampleSpec, ...]

    def plan_hash(self) -> str:
        blob = json.dumps([[s.key, s.meta, {k: asdict(c) for k, c in s.clips.items()}] for s in self.samples]
                          + [asdict(self.opts), self.chunk_s], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: identical inputs, identical bytes
    tar.addfile(info, io.BytesIO(data))


def _member_name(prefix: str, opts: EncodeOptions) -> str:
    ext = "jpgs" if opts.frame_format == "jpgs" else "mp4"
    return f"{prefix}.{ext}" if prefix else ext


def write_shard(job: ShardJob) -> dict:
    """Write one shard (or keep it when already complete); returns its sidecar record."""
    out = Path(job.out_dir)
    tar_path, side_path = out / f"{job.name}.tar", out / f"{job.name}.json"
    digest = job.plan_hash()
    if tar_path.is_file() and side_path.is_file():
        record = json.loads(side_path.read_text())
        if record.get("plan_hash") == digest:
            return {**record, "kept": True}
    began = time.process_time()
    failures, count, source_s = [], 0, 0.0
    tmp_path = out / f"{job.name}.tar.tmp"
    reader = SourceReader()
    with reader, tarfile.open(tmp_path, "w", format=tarfile.GNU_FORMAT) as tar:
        for sample in job.samples:
            members, timing = {}, {}
            try:
                for prefix, clip in sample.clips.items():
                    segments = video_segments(job.video_root, clip.uid, clip.start, clip.end, job.chunk_s, clip.subdirs)
                    data, info = cut_clip(segments, clip.start, clip.end, job.opts, reader)
                    name = _member_name(prefix, job.opts)
                    members[name], timing[name] = data, info
            except ClipError as exc:
                failures.append({"id": sample.key, "reason": str(exc)})
                continue
            meta = {**sample.meta, "clips": timing}
            _add_member(tar, f"{sample.key}.json", json.dumps(meta, sort_keys=True).encode())
            for name, data in members.items():
                _add_member(tar, f"{sample.key}.{name}", data)
            count += 1
            source_s += sum(info["source_s"] for info in timing.values())
    os.replace(tmp_path, tar_path)
    record = {"name": f"{job.name}.tar", "samples": count, "bytes": tar_path.stat().st_size,
              "failures": failures, "plan_hash": digest, "source_s": round(source_s, 3),
              "cpu_s": round(time.process_time() - began, 3)}
    side_path.write_text(json.dumps(record, indent=1))
    return {**record, "kept": False}


def write_shards(jobs: list[ShardJob], workers: int, progress: bool = True) -> list[dict]:
    """Run the jobs over ``workers`` processes with a progress bar; records come back in plan order."""
    from tqdm import tqdm

    total = sum(len(j.samples) for j in jobs)
    records: dict[str, dict] = {}
    bar = tqdm(total=total, unit="sample", desc="shards", disable=not progress)
    if workers <= 1:
        results = map(write_shard, jobs)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(workers)
        results = pool.imap_unordered(write_shard, jobs)
    try:
        for record in results:
            records[record["name"]] = record
            bar.update(record["samples"] + len(record["failures"]))
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    return [records[f"{j.name}.tar"] for j in jobs]


def write_manifest(out_dir: str | Path, task: str, records: list[dict], plan_failures: list[dict],
                   planned: int, options: dict, extra: dict | None = None) -> dict:
    failures = list(plan_failures) + [f for r in records for f in r["failures"]]
    cpu_s = sum(r["cpu_s"] for r in records if not r.get("kept"))
    source_s = sum(r["source_s"] for r in records if not r.get("kept"))
    manifest = {
        "format_version": FORMAT_VERSION, "task": task, "options": options,
        "shards": [{"name": r["name"], "samples": r["samples"], "bytes": r["bytes"]} for r in records],
        "total_samples": sum(r["samples"] for r in records),
        "total_bytes": sum(r["bytes"] for r in records),
        "rows_planned": planned, "failures": failures,
        "source_seconds": round(sum(r["source_s"] for r in records), 3),
        # Throughput of the shards written in this run (kept shards excluded).
        "source_s_per_cpu_s": round(source_s / cpu_s, 3) if cpu_s > 0 else None,
        **(extra or {}),
    }
    Path(out_dir, MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def read_manifest(shard_dir: str | Path) -> dict:
    path = Path(shard_dir, MANIFEST)
    if not path.is_file():
        raise MissingPathError(f"no {MANIFEST} in {shard_dir}: write the shards with egovlpv2-make-shards")
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: shard format {manifest.get('format_version')} is not {FORMAT_VERSION}")
    return manifest
