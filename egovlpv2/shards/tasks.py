"""The make_shards run: plan a task's samples, write the shards in parallel, write the manifest."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from egovlpv2.shards.egoclip_csv import read_egoclip
from egovlpv2.shards.plan import plan_egoclip, plan_in_order
from egovlpv2.shards.writer import ShardJob, write_manifest, write_shards
from egovlpv2.shards.transcode import EncodeOptions

TASKS = ("egoclip", "egomcq", "epic_mir", "charades_ego")


@dataclass
class ShardRun:
    task: str
    videos: str
    out: str
    csv: str = ""                  # egoclip csv / EK-100 retrieval csv / Charades-Ego csv
    json: str = ""                 # egomcq.json
    sentence_csv: str = ""         # EK-100 MIR unique captions
    relevancy: str = ""            # EK-100 MIR relevancy pickle
    classes: str = ""              # Charades_v1_classes.txt
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    samples_per_shard: int = 0     # 0: the task's default
    chunk_seconds: float = 600.0
    limit: int | None = None
    seed: int = 0
    num_verbs: int = 118
    num_nouns: int = 582
    max_failure_fraction: float = 0.05
    progress: bool = True
    encode: EncodeOptions = field(default_factory=EncodeOptions)


def _plan(run: ShardRun):
    """(shards of SampleSpec, plan failures, rows read, extra manifest fields) for the run's task."""
    if run.task == "egoclip":
        rows, failures = read_egoclip(run.csv, run.num_verbs, run.num_nouns, run.limit)
        shards = plan_egoclip(rows, run.samples_per_shard or 1000, run.seed)
        return shards, [f.to_dict() for f in failures], len(rows) + len(failures), {}
    from egovlpv2.shards import eval_sources

    samples, failures, extra = eval_sources.plan_eval_task(run)
    return (plan_in_order(samples, run.samples_per_shard or 200), failures, len(samples) + len(failures), extra)


def make_shards(run: ShardRun) -> tuple[dict, bool]:
    """Write the shards and manifest; returns (manifest, ok) where ok is False when the failed fraction
    of rows exceeds ``max_failure_fraction``."""
    if run.task not in TASKS:
        raise ValueError(f"unknown task {run.task!r}; one of {TASKS}")
    if not Path(run.videos).is_dir():
        raise FileNotFoundError(f"video root not found: {run.videos}")
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    shards, plan_failures, planned, extra = _plan(run)
    prefix = run.task
    jobs = [ShardJob(f"{prefix}-{i:06d}", str(out), run.videos, run.chunk_seconds, run.encode, tuple(samples))
            for i, samples in enumerate(shards)]
    for stale in out.glob(f"{prefix}-*.tar"):  # shards of an earlier, larger plan would be read as data
        if stale.stem not in {j.name for j in jobs}:
            stale.unlink()
            stale.with_suffix(".json").unlink(missing_ok=True)
    records = write_shards(jobs, run.workers, run.progress)
    options = {k: v for k, v in asdict(run).items() if k not in ("workers", "progress")}
    manifest = write_manifest(out, run.task, records, plan_failures, planned, options, extra)
    failed = len(manifest["failures"])
    ok = planned > 0 and failed <= run.max_failure_fraction * planned
    return manifest, ok
