"""The run's outputs beside the shards, gathered once every planned shard has its record.

- ``manifest.json``: what readers need (shards, samples, bytes, totals, options, failure counts by reason).
- ``failures.jsonl``: one line per row that gave no sample, ``{"id", "reason", "detail"}``, paths relative
  to the video root. Only people and ``make_shards`` read it; training-time readers never open it.
- ``summary.json`` and ``missing_videos.txt``: how complete the shards are against the metadata.

Every part of a cluster run makes the same plan and tries the merge when its own shards are done; the merge
happens when the last part finishes, and merging twice gives the same files. The first part records the plan
(``records/plan.json``) with its fingerprint; a part whose plan differs from an unfinished recorded one is
refused (``plan_difference``), so parts given different options never overwrite each other's shards.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterable

from egovlpv2.data.manifest import FORMAT_VERSION, MANIFEST
from egovlpv2.fileio import atomic_open, atomic_write_json
from egovlpv2.shards.writer import RECORDS, read_record
from egovlpv2.storage import is_url

FAILURES = "failures.jsonl"
SUMMARY = "summary.json"
MISSING_VIDEOS = "missing_videos.txt"
PLAN = "plan.json"
PLAN_FAILURES = "plan_failures.jsonl"


def write_plan(out_dir: str | Path, plan: dict, failures: Iterable[dict], missing_videos: Iterable[str]) -> None:
    """The plan record, the rows failed at plan time, and the videos not found (the same from every part)."""
    records = Path(out_dir, RECORDS)
    records.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    with atomic_open(records / PLAN_FAILURES) as f:
        for failure in failures:
            counts[failure["reason"]] += 1
            f.write(json.dumps(failure) + "\n")
    with atomic_open(Path(out_dir, MISSING_VIDEOS)) as f:
        f.writelines(f"{uid}\n" for uid in missing_videos)
    atomic_write_json(records / PLAN, {**plan, "plan_failures": dict(sorted(counts.items()))})


def read_plan(out_dir: str | Path) -> dict:
    return json.loads(Path(out_dir, RECORDS, PLAN).read_text())


def recorded_plan(out_dir: str | Path) -> dict | None:
    """The plan record, or None where there is none (or a torn one, which no part can have finished)."""
    try:
        return read_plan(out_dir)
    except (OSError, ValueError):
        return None


# Options that change neither which shards are written nor their bytes (``out`` is where they all meet).
UNPLANNED_OPTIONS = ("max_failure_fraction", "out")
# Input paths: the same file named relative to another working directory is the same input.
PATH_OPTIONS = ("videos", "csv", "json", "sentence_csv", "relevancy", "classes")


def _flat_options(options: dict) -> dict:
    flat = {}
    for key, value in options.items():
        flat.update(value if isinstance(value, dict) else {key: value})
    return {k: os.path.abspath(v) if k in PATH_OPTIONS and v and not is_url(v) else v
            for k, v in flat.items() if k not in UNPLANNED_OPTIONS}


def plan_fingerprint(plan: dict) -> str:
    """Names the shards a plan writes: the task, the options that shape them, each shard's name and hash."""
    blob = json.dumps([plan["task"], _flat_options(plan["options"]), plan["shards"], plan["hashes"]],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def plan_difference(recorded: dict, plan: dict) -> str | None:
    """How ``plan`` differs from the ``recorded`` one, named as command-line options; None for the same plan."""
    if recorded.get("fingerprint") == plan["fingerprint"] and recorded.get("parts") == plan["parts"]:
        return None
    mine, theirs = _flat_options(plan["options"]), _flat_options(recorded.get("options", {}))
    changed = [f"--{k.replace('_', '-')} {mine.get(k)!r} here, {theirs.get(k)!r} in the recorded plan"
               for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
    if recorded.get("parts") != plan["parts"]:
        changed.append(f"--parts {plan['parts']} here, {recorded.get('parts')} in the recorded plan")
    return "; ".join(changed) or "same options, but the metadata or the videos changed since the recorded plan"


def shard_records(out_dir: str | Path, plan: dict) -> list[dict] | None:
    """Every planned shard's record, or None while a shard is unfinished (or of an older plan)."""
    records = []
    for name, digest in zip(plan["shards"], plan["hashes"]):
        record = read_record(out_dir, name)
        if record is None or record["plan_hash"] != digest:
            return None
        records.append(record)
    return records


def merge(out_dir: str | Path, max_failure_fraction: float) -> tuple[dict, dict, bool] | None:
    """Write the manifest, failures and summary when all parts are done: ``(manifest, summary, ok)``, or None
    while shards are unfinished. ``ok`` is False when no sample was written or the failed fraction of rows
    exceeds ``max_failure_fraction``."""
    out = Path(out_dir)
    plan = read_plan(out)
    records = shard_records(out, plan)
    if records is None:
        return None
    counts = Counter(plan["plan_failures"])
    with atomic_open(out / FAILURES) as f:
        with open(out / RECORDS / PLAN_FAILURES, encoding="utf-8") as planned:
            for line in planned:
                f.write(line)
        for record in records:
            for failure in record["failures"]:
                counts[failure["reason"]] += 1
                f.write(json.dumps(failure) + "\n")
    written = [r for r in records if r["samples"] > 0]
    failed = sum(counts.values())
    source_s = sum(r["source_s"] for r in records)
    cpu_s = sum(r["cpu_s"] for r in records)
    manifest = {
        "format_version": FORMAT_VERSION, "task": plan["task"], "options": plan["options"],
        "shards": [{"name": r["name"], "samples": r["samples"], "bytes": r["bytes"]} for r in written],
        "total_samples": sum(r["samples"] for r in written),
        "total_bytes": sum(r["bytes"] for r in written),
        "rows_planned": plan["rows_planned"], "rows_failed": failed,
        "failures": dict(sorted(counts.items())), "failures_file": FAILURES,
        "source_seconds": round(source_s, 3),
        "source_s_per_cpu_s": round(source_s / cpu_s, 3) if cpu_s > 0 else None,
        **plan["extra"],
    }
    summary = {**plan_summary(plan), "rows_written": manifest["total_samples"], "rows_failed": failed,
               "failed_by_reason": manifest["failures"], "clip_hours_written": round(source_s / 3600, 3),
               "shards": len(written), "bytes": manifest["total_bytes"]}
    atomic_write_json(out / SUMMARY, summary, indent=1)
    atomic_write_json(out / MANIFEST, manifest, indent=1)
    planned = plan["rows_planned"]
    ok = manifest["total_samples"] > 0 and failed <= max_failure_fraction * planned
    return manifest, summary, ok


def plan_summary(plan: dict) -> dict:
    """What the plan alone tells: rows, rows failed before writing (bad rows, missing videos), videos."""
    videos = plan["videos"]
    return {"task": plan["task"], "rows_planned": plan["rows_planned"], "rows_to_write": plan["samples_planned"],
            "rows_failed": sum(plan["plan_failures"].values()), "failed_by_reason": plan["plan_failures"],
            "videos_referenced": videos["referenced"], "videos_found": videos["found"],
            "videos_missing": videos["referenced"] - videos["found"], "missing_videos_file": MISSING_VIDEOS,
            "source_hours_referenced": videos["hours_referenced"], "source_hours_found": videos["hours_found"]}


def format_summary(summary: dict) -> list[str]:
    """The summary as lines for a person deciding what to fetch or fix next."""
    done = (f"{summary['rows_written']} written" if "rows_written" in summary
            else f"{summary['rows_to_write']} to write (plan only)")
    lines = [f"rows: {summary['rows_planned']} planned, {done}, {summary['rows_failed']} failed"]
    lines += [f"  {reason}: {count}" for reason, count in summary["failed_by_reason"].items()]
    lines.append(f"videos: {summary['videos_referenced']} referenced, {summary['videos_found']} found, "
                 f"{summary['videos_missing']} missing (listed in {summary['missing_videos_file']})")
    if summary["source_hours_referenced"] is not None:
        lines.append(f"source video: {summary['source_hours_found']:.1f} of {summary['source_hours_referenced']:.1f} "
                     f"hours found")
    if "shards" in summary:
        lines.append(f"shards: {summary['shards']} ({summary['bytes'] / 1e6:.1f} MB), "
                     f"{summary['clip_hours_written']:.2f} hours of clips")
    return lines
