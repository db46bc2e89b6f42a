"""The shard directory's manifest: the one file every reader of shards opens first.

Written offline by ``egovlpv2.shards``; read here, at training and evaluation time. It lists the shards
with their sample counts and sizes, the totals, the options the shards were written with, and failure
counts by reason. Per-row failures live in a separate file that no training-time reader opens.

A process reads it once (``ShardManifest.read``, perhaps from object storage) and hands the object to every
reader that needs it; those readers also take a shard location and read it themselves when called alone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from egovlpv2.errors import UserError
from egovlpv2.paths import path_inside
from egovlpv2.storage import exists, join, read_bytes

MANIFEST = "manifest.json"
# 2: failures are counted by reason here and listed in failures.jsonl (1 listed every failed row here).
FORMAT_VERSION = 2
CAPTIONS_FILE = "captions.json"   # EPIC-KITCHENS-100 MIR unique captions, beside the shards
CLASSES_FILE = "classes.json"     # Charades-Ego class names, beside the shards


class ShardTaskError(UserError, ValueError):
    """Shards of another task than the reader's (EK-100 MIR shards given to Charades-Ego, ...)."""


def read_manifest(shard_dir: str | Path) -> dict:
    """The manifest of a shard directory or URL prefix."""
    path = join(str(shard_dir), MANIFEST)
    if not exists(path):
        raise FileNotFoundError(f"no {MANIFEST} in {shard_dir}: write the shards with shard_tools/make_shards.py")
    manifest = json.loads(read_bytes(path))
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: shard format {manifest.get('format_version')} is not {FORMAT_VERSION}; write the "
                         f"shards again with shard_tools/make_shards.py")
    # Readers join these names to the shard directory: none may lead out of it.
    for name in [s["name"] for s in manifest["shards"]] + [manifest[k] for k in ("captions_file", "classes_file")
                                                             if k in manifest]:
        path_inside(shard_dir, name)
    return manifest


@dataclass(frozen=True)
class ShardManifest:
    """The manifest of the shard directory or URL prefix ``location``, as read once."""

    location: str
    fields: dict

    @classmethod
    def read(cls, shard_dir: "str | Path | ShardManifest") -> "ShardManifest":
        """The manifest of ``shard_dir``; an already-read manifest is returned as it is."""
        if isinstance(shard_dir, ShardManifest):
            return shard_dir
        return cls(str(shard_dir), read_manifest(shard_dir))

    @property
    def task(self) -> str:
        return self.fields["task"]

    @property
    def total_samples(self) -> int:
        return int(self.fields["total_samples"])

    def require_task(self, task: str, what: str = "") -> "ShardManifest":
        """Itself, or ShardTaskError when the shards are of another task (``what`` names the expected kind)."""
        if self.task != task:
            raise ShardTaskError(f"{self.location} holds {self.task} shards, not {what or task} shards")
        return self

    def shard_counts(self) -> dict[str, int]:
        """Samples per non-empty shard, in the manifest's order (which defines each sample's global index)."""
        return {s["name"]: int(s["samples"]) for s in self.fields["shards"] if s["samples"] > 0}

    def path(self, name: str) -> str:
        """Where file ``name`` of the manifest (a shard, the captions) lies."""
        return join(self.location, name)
