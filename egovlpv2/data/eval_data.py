"""What the evaluation shards' manifests record beside the samples: the EK-100 MIR captions and relevancy
path, the Charades-Ego class names. The samples themselves are read by ``egovlpv2.eval.eval_samples``."""
from __future__ import annotations

import json
from pathlib import Path

from egovlpv2.data.eval_sources import CLASSES_FILE
from egovlpv2.data.shard_writer import read_manifest


def load_epic_mir_captions(shard_dir: str) -> list[str]:
    return json.loads(Path(shard_dir, read_manifest(shard_dir)["captions_file"]).read_text())


def epic_mir_relevancy_path(shard_dir: str) -> str:
    return read_manifest(shard_dir)["relevancy"]


def load_charades_classes(shard_dir: str) -> list[str]:
    return json.loads(Path(shard_dir, read_manifest(shard_dir).get("classes_file", CLASSES_FILE)).read_text())


__all__ = ["load_epic_mir_captions", "epic_mir_relevancy_path", "load_charades_classes"]
