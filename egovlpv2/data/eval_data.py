"""What the evaluation shards' manifests record beside the samples: the EK-100 MIR captions and relevancy
path, the Charades-Ego class names. Each takes a shard location or its already-read ShardManifest."""
from __future__ import annotations

import json

from egovlpv2.data.manifest import CLASSES_FILE, ShardManifest
from egovlpv2.storage import read_bytes


def load_epic_mir_captions(shard_dir: "str | ShardManifest") -> list[str]:
    manifest = ShardManifest.read(shard_dir)
    return json.loads(read_bytes(manifest.path(manifest.fields["captions_file"])))


def epic_mir_relevancy_path(shard_dir: "str | ShardManifest") -> str:
    return ShardManifest.read(shard_dir).fields["relevancy"]


def load_charades_classes(shard_dir: "str | ShardManifest") -> list[str]:
    manifest = ShardManifest.read(shard_dir)
    return json.loads(read_bytes(manifest.path(manifest.fields.get("classes_file", CLASSES_FILE))))


__all__ = ["load_epic_mir_captions", "epic_mir_relevancy_path", "load_charades_classes"]
