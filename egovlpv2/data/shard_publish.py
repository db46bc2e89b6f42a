"""make_shards to any location: a local directory as before, or an object-storage URL (s3://, gs://).

For a URL the local writer runs unchanged in a staging directory; each finished shard is then uploaded
(an object appears whole or not at all), its stored size checked, and its sidecar uploaded after it as the
mark of a complete shard. The manifest goes up last, so a reader that finds it finds every shard it lists.
A rerun skips shards whose uploaded sidecar matches the plan and whose object has the recorded size.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from egovlpv2.data.shard_tasks import ShardRun, make_shards
from egovlpv2.data.shard_writer import MANIFEST
from egovlpv2.fileio import atomic_write_json
from egovlpv2.storage import StorageError, is_url, join, list_names, read_bytes, remove, size, upload

EXTRA_FILES = ("captions_file", "classes_file")  # manifest fields naming files written beside the shards


def default_staging(url: str) -> Path:
    """A staging directory that a rerun for the same URL finds again (so finished shards are kept)."""
    return Path(tempfile.gettempdir(), f"egovlpv2-staging-{hashlib.sha256(url.encode()).hexdigest()[:16]}")


def _uploaded(url: str, sidecar: dict) -> bool:
    """Whether ``url`` already holds the shard that ``sidecar`` (the local record) describes."""
    side_url = url[: -len(".tar")] + ".json"
    if size(side_url) is None or size(url) != sidecar["bytes"]:
        return False
    try:
        remote = json.loads(read_bytes(side_url))
    except (StorageError, ValueError):
        return False
    return remote.get("plan_hash") == sidecar["plan_hash"] and remote.get("bytes") == sidecar["bytes"]


def publish_shard(stage: Path, out: str, name: str) -> bool:
    """Upload shard ``name`` (tar, then sidecar) from ``stage`` to ``out``; False when it was already there."""
    tar_url = join(out, name)
    side_name = name[: -len(".tar")] + ".json"
    sidecar = json.loads(Path(stage, side_name).read_text())
    if _uploaded(tar_url, sidecar):
        return False
    upload(str(stage / name), tar_url)
    upload(str(stage / side_name), join(out, side_name))
    return True


def write_shards_to(run: ShardRun, staging: str | None = None) -> tuple[dict, bool, int]:
    """make_shards for ``run.out`` a path or URL; returns (manifest, ok, shards uploaded by this call)."""
    if not is_url(run.out):
        manifest, ok = make_shards(run)
        return manifest, ok, 0
    stage = Path(staging) if staging else default_staging(run.out)
    manifest, ok = make_shards(replace(run, out=str(stage)))
    manifest["options"]["out"] = run.out
    uploaded = sum(publish_shard(stage, run.out, entry["name"]) for entry in manifest["shards"])
    for field in EXTRA_FILES:
        if manifest.get(field):
            upload(str(stage / manifest[field]), join(run.out, manifest[field]))
    atomic_write_json(stage / MANIFEST, manifest, indent=1)
    upload(str(stage / MANIFEST), join(run.out, MANIFEST))
    listed = {entry["name"][: -len(".tar")] for entry in manifest["shards"]}
    for name in list_names(run.out):  # shards of an earlier, larger plan, unlisted now that the manifest is up
        stem, _, ext = name.rpartition(".")
        if stem.startswith(f"{run.task}-") and ext in ("tar", "json") and stem not in listed:
            remove(join(run.out, name))
    shutil.rmtree(stage)
    return manifest, ok, uploaded
