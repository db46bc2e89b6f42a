"""Writing webdataset shards from planned samples: parallel, resumable, deterministic.

A plan is a list of shards, each a list of SampleSpec. Every shard is written by one worker process to
``{name}.tar`` (via a temporary file) with a sidecar ``{name}.json`` holding its sample count, bytes
and failures; a shard whose sidecar matches the plan is kept on a rerun, and a shard whose sidecar is
missing or unreadable is written again. Any error while cutting one sample makes that sample a failure
with a reason; it never ends the run. The manifest gathers them.
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
from egovlpv2.fileio import atomic_write_json
from egovlpv2.paths import path_inside

MANIFEST = "manifest.json"
PARTIAL_SUFFIX = ".tar.tmp"        # a shard being written; what a killed run leaves behind
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


def _finished_record(tar_path: Path, side_path: Path, digest: str) -> dict | None:
    """The sidecar of a finished shard of this plan; None (write it again) when missing, torn or stale."""
    if not (tar_path.is_file() and side_path.is_file()):
        return None
    try:
        record = json.loads(side_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("plan_hash") == digest else None


def write_shard(job: ShardJob) -> dict:
    """Write one shard (or keep it when already complete); returns its sidecar record."""
    out = Path(job.out_dir)
    tar_path, side_path = out / f"{job.name}.tar", out / f"{job.name}.json"
    digest = job.plan_hash()
    record = _finished_record(tar_path, side_path, digest)
    if record is not None:
        return {**record, "kept": True}
    began = time.process_time()
    failures, count, source_s = [], 0, 0.0
    tmp_path = out / f"{job.name}{PARTIAL_SUFFIX}"
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
            except Exception as exc:  # an encoder or library error is this sample's, not the run's
                reader.close()
                failures.append({"id": sample.key, "reason": f"{type(exc).__name__}: {exc}"})
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
    atomic_write_json(side_path, record, indent=1)
    return {**record, "kept": False}


def remove_partial_files(out_dir: str | Path) -> list[Path]:
    """Delete what an interrupted run left half-written in ``out_dir``; returns the removed files."""
    out = Path(out_dir)
    leftovers = list(out.glob(f"*{PARTIAL_SUFFIX}")) + list(out.glob(".*.tmp"))  # .tmp: an atomic write's
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


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
    atomic_write_json(Path(out_dir, MANIFEST), manifest, indent=1)
    return manifest


def read_manifest(shard_dir: str | Path) -> dict:
    path = Path(shard_dir, MANIFEST)
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {shard_dir}: write the shards with shard_tools/make_shards.py")
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: shard format {manifest.get('format_version')} is not {FORMAT_VERSION}")
    # Readers join these names to the shard directory: none may lead out of it.
    for name in [s["name"] for s in manifest["shards"]] + [manifest[k] for k in ("captions_file", "classes_file")
                                                             if k in manifest]:
        path_inside(shard_dir, name)
    return manifest
