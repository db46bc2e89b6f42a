"""make_shards to any location: a local directory as before, or an object-storage URL (s3://, gs://).

For a URL the local writer runs unchanged in a staging directory; each finished shard is then uploaded
(an object appears whole or not at all), its stored size checked, and its record uploaded after it as the
mark of a complete shard. The failures, the summary and the manifest go up last, the manifest at the very
end, so a reader that finds it finds every shard it lists. A rerun skips shards whose uploaded record
matches the plan and the local record (size and sha256) and whose object has the recorded size.

Staging is private: whatever is in it is uploaded as the user's data, so a directory that another user
created, or may write to, is refused rather than used; and a staged shard goes up only when its file
still has the size and sha256 that its record names.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from egovlpv2.data.manifest import MANIFEST
from egovlpv2.errors import UserError
from egovlpv2.fileio import atomic_write_json
from egovlpv2.paths import private_directory
from egovlpv2.shards.make import ShardRun, make_shards
from egovlpv2.shards.merge import FAILURES, MISSING_VIDEOS, SUMMARY
from egovlpv2.shards.writer import RECORDS, matches_record, read_record
from egovlpv2.storage import StorageError, is_url, join, list_names, read_bytes, remove, size, upload

EXTRA_FILES = ("captions_file", "classes_file")  # manifest fields naming files written beside the shards


def default_staging(url: str) -> Path:
    """A staging directory that a rerun for the same URL by the same user finds again (so finished shards
    are kept)."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir(), f"egovlpv2-staging-{os.getuid()}-{digest}")


def _record_url(out: str, stem: str) -> str:
    return join(join(out, RECORDS), f"{stem}.json")


def _uploaded(out: str, stem: str, record: dict) -> bool:
    """Whether ``out`` already holds the shard that ``record`` (the local one) describes."""
    if size(join(out, f"{stem}.tar")) != record["bytes"]:
        return False
    try:
        remote = json.loads(read_bytes(_record_url(out, stem)))
    except (StorageError, ValueError):
        return False
    return all(remote.get(k) == record[k] for k in ("plan_hash", "bytes", "sha256"))


def publish_shard(stage: Path, out: str, name: str) -> bool:
    """Upload shard ``name`` (tar, then record) from ``stage`` to ``out``; False when it was already there."""
    stem = name[: -len(".tar")]
    record = read_record(stage, stem)
    if _uploaded(out, stem, record):
        return False
    if not matches_record(stage / name, record):  # changed since it was written and checked: never upload it
        raise StorageError(f"staged shard {stage / name} no longer has the size and sha256 of its record; "
                           f"nothing was uploaded for it, rerun to write it again")
    upload(str(stage / name), join(out, name))
    upload(str(Path(stage, RECORDS, f"{stem}.json")), _record_url(out, stem))
    return True


def _summary(out: str | Path) -> dict | None:
    path = Path(out, SUMMARY)
    return json.loads(path.read_text()) if path.is_file() else None


def write_shards_to(run: ShardRun, staging: str | None = None) -> tuple[dict | None, dict | None, bool, int]:
    """make_shards for ``run.out`` a path or URL; returns (manifest, summary, ok, shards uploaded by this
    call). The manifest is None for ``plan_only`` and while other parts are unfinished (then so is the
    summary, unless ``plan_only``)."""
    if not is_url(run.out):
        manifest, ok = make_shards(run)
        return manifest, _summary(run.out) if manifest is not None or run.plan_only else None, ok, 0
    if run.parts > 1:
        raise UserError(f"--parts {run.parts} with a URL --out: the parts meet in one shared directory; write them "
                        f"to a shared filesystem, or write one part per URL")
    stage = private_directory(Path(staging) if staging else default_staging(run.out), "staging directory",
                              "what it holds would be uploaded as yours; remove it, or pass --staging with a "
                              "directory of your own")
    manifest, ok = make_shards(replace(run, out=str(stage)))
    if manifest is None:  # plan_only: the summary stays in the staging directory too
        return None, _summary(stage), ok, 0
    manifest["options"]["out"] = run.out
    uploaded = sum(publish_shard(stage, run.out, entry["name"]) for entry in manifest["shards"])
    extras = [manifest[field] for field in EXTRA_FILES if manifest.get(field)]
    for name in [*extras, FAILURES, MISSING_VIDEOS, SUMMARY]:
        upload(str(stage / name), join(run.out, name))
    atomic_write_json(stage / MANIFEST, manifest, indent=1)
    upload(str(stage / MANIFEST), join(run.out, MANIFEST))
    listed = {entry["name"][: -len(".tar")] for entry in manifest["shards"]}
    for name in list_names(run.out):  # shards of an earlier, larger plan, unlisted now that the manifest is up
        stem, _, ext = name.rpartition(".")
        if stem.startswith(f"{run.task}-") and ext == "tar" and stem not in listed:
            remove(join(run.out, name))
            remove(_record_url(run.out, stem))
    summary = _summary(stage)
    shutil.rmtree(stage)
    return manifest, summary, ok, uploaded
