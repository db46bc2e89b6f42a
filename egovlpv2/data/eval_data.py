"""What the evaluation shards' manifests record beside the samples: the EK-100 MIR captions and relevancy
path, the Charades-Ego class names. The samples themselves are read by ``egovlpv2.eval.eval_samples``."""
from __future__ import annotations

import json

from egovlpv2.data.manifest import CLASSES_FILE, read_manifest
from egovlpv2.storage import join, read_bytes


def load_epic_mir_captions(shard_dir: str) -> list[str]:
    return json.loads(read_bytes(join(shard_dir, read_manifest(shard_dir)["captions_file"])))


def epic_mir_relevancy_path(shard_dir: str) -> str:
    return read_manifest(shard_dir)["relevancy"]


def load_charades_classes(shard_dir: str) -> list[str]:
    return json.loads(read_bytes(join(shard_dir, read_manifest(shard_dir).get("classes_file", CLASSES_FILE))))


__all__ = ["load_epic_mir_captions", "epic_mir_relevancy_path", "load_charades_classes"]
