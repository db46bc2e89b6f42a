"""Writing webdataset shards from planned samples: parallel, resumable, deterministic.

A plan is a list of shards, each a source of SampleSpec. Every shard is written by one worker process to
``{name}.tar`` (via a temporary file of its own; no tar when no sample succeeds) with a sidecar record
``records/{name}.json`` holding its sample count, failures, and the size and sha256 of the file it renamed;
a shard is kept on a rerun only when its record matches the plan and the file on disk matches the record.
The manifest gathers the records (``egovlpv2.shards.merge``).
"""
from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import secrets
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from egovlpv2.fileio import atomic_write_json, fsync_dir, leftover_temporaries
from egovlpv2.shards.source_reader import SourceReader
from egovlpv2.shards.transcode import ClipError, EncodeOptions, cut_clip, video_segments


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


PARTIAL_SUFFIX = ".tar.tmp"        # a shard being written ({name}.{writer}.tar.tmp); what a killed run leaves behind
RECORDS = "records"  # one sidecar per planned shard (its samples, bytes, failures), and the plan


@dataclass(frozen=True)
class ShardJob:
    name: str
    out_dir: str
    video_root: str
    chunk_s: float
    opts: EncodeOptions
    source: object                 # the shard's samples: plan.CsvRows or plan.Planned (sample_specs(), identity())

    def plan_hash(self) -> str:
        blob = json.dumps([self.source.identity(), asdict(self.opts), self.chunk_s], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def record_path(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir, RECORDS, f"{name}.json")


def read_record(out_dir: str | Path, name: str) -> dict | None:
    """A shard's record; None (the shard is unfinished) when missing or unreadable (a torn write)."""
    try:
        record = json.loads(record_path(out_dir, name).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: identical inputs, identical bytes
    tar.addfile(info, io.BytesIO(data))


def _member_name(prefix: str, opts: EncodeOptions) -> str:
    ext = "jpgs" if opts.frame_format == "jpgs" else "mp4"
    return f"{prefix}.{ext}" if prefix else ext


def relative_to_root(text: str, root: str) -> str:
    """``text`` with the video root's prefix removed from the paths it names."""
    prefix = str(Path(root).resolve()) + os.sep
    return text.replace(prefix, "").replace(str(Path(root)) + os.sep, "")


def encode_sample(sample: SampleSpec, job: ShardJob, reader: SourceReader) -> tuple[dict, float] | dict:
    """One planned sample to its tar members ``({member: bytes}, source seconds)``, or to its failure
    ``{"id", "reason", "detail"}`` (paths relative to the video root)."""
    members, timing = {}, {}
    try:
        for prefix, clip in sample.clips.items():
            segments = video_segments(job.video_root, clip.uid, clip.start, clip.end, job.chunk_s, clip.subdirs)
            data, info = cut_clip(segments, clip.start, clip.end, job.opts, reader)
            name = _member_name(prefix, job.opts)
            members[name], timing[name] = data, info
    except ClipError as exc:
        return {"id": sample.key, "reason": exc.reason, "detail": relative_to_root(str(exc), job.video_root)}
    except Exception as exc:  # an encoder or library error is this row's, not the run's
        reader.close()  # its open source may be in any state now
        return {"id": sample.key, "reason": "encode_error",
                "detail": relative_to_root(f"{type(exc).__name__}: {exc}", job.video_root)}
    meta = {**sample.meta, "clips": timing}
    return {"json": json.dumps(meta, sort_keys=True).encode(), **members}, sum(i["source_s"] for i in timing.values())


def file_digest(f) -> tuple[int, str]:
    """Size and sha256 of an open binary file, read from its start."""
    f.seek(0)
    digest = hashlib.file_digest(f, "sha256").hexdigest()
    return f.tell(), digest


def matches_record(path: str | Path, record: dict) -> bool:
    """Whether the file at ``path`` is the one ``record`` describes: same size, same sha256."""
    try:
        if os.stat(path).st_size != record.get("bytes"):
            return False
        with open(path, "rb") as f:
            return file_digest(f)[1] == record.get("sha256")
    except OSError:
        return False


def _is_complete(out: Path, name: str, record: dict | None, digest: str) -> bool:
    if record is None or record.get("plan_hash") != digest:
        return False
    return matches_record(out / f"{name}.tar", record) if record.get("samples") else True


def write_shard(job: ShardJob) -> dict:
    """Write one shard (or keep it when already complete); returns its sidecar record. A shard whose
    samples all fail leaves no tar, only its record."""
    out = Path(job.out_dir)
    tar_path = out / f"{job.name}.tar"
    digest = job.plan_hash()
    record = read_record(out, job.name)
    if _is_complete(out, job.name, record, digest):
        return {**record, "kept": True}
    began = time.process_time()
    failures, count, source_s = [], 0, 0.0
    # A name of this writer's own: a second writer of the same shard never writes into this file.
    tmp_path = out / f"{job.name}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
    reader = SourceReader()
    try:
        with reader, open(tmp_path, "w+b") as f:
            with tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT) as tar:
                for sample in job.source.sample_specs():
                    result = encode_sample(sample, job, reader)
                    if isinstance(result, dict):
                        failures.append(result)
                        continue
                    members, seconds = result
                    for name, data in members.items():
                        _add_member(tar, f"{sample.key}.{name}", data)
                    count += 1
                    source_s += seconds
            f.flush()
            os.fsync(f.fileno())
            size, sha256 = file_digest(f)  # of the file about to be renamed, whatever else is in the directory
        if count:
            os.replace(tmp_path, tar_path)
            fsync_dir(out)
        else:
            tmp_path.unlink()
            tar_path.unlink(missing_ok=True)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    record = {"name": f"{job.name}.tar", "samples": count, "bytes": size if count else 0,
              "sha256": sha256 if count else None, "failures": failures, "plan_hash": digest,
              "source_s": round(source_s, 3), "cpu_s": round(time.process_time() - began, 3)}
    atomic_write_json(record_path(out, job.name), record, indent=0)
    return {**record, "kept": False}


def remove_partial_files(out_dir: str | Path, names: set[str] | None = None) -> list[Path]:
    """Delete what an interrupted run left half-written: partial shards and the temporaries of atomic writes.
    With ``names`` (one part of a cluster run: other parts may be writing theirs right now) only those of
    the shards ``names``. Returns the removed files."""
    out = Path(out_dir)
    candidates = [(p, p.name) for p in out.glob(f"*{PARTIAL_SUFFIX}")]
    candidates += leftover_temporaries(out) + leftover_temporaries(Path(out, RECORDS))
    leftovers = [p for p, target in candidates if names is None or target.split(".")[0] in names]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def write_shards(jobs: list[ShardJob], workers: int, progress: bool = True) -> list[dict]:
    """Run the jobs over ``workers`` processes with a progress bar; records come back in plan order."""
    from tqdm import tqdm

    if jobs:
        Path(jobs[0].out_dir, RECORDS).mkdir(parents=True, exist_ok=True)
    total = sum(len(j.source) for j in jobs)
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
