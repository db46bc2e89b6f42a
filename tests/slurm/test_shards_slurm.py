"""Shard writing as a 2-node job through launch/submit.py --entry shards: one part of the plan per task,
the same manifest and samples as one local process, and a rerun that redoes only a lost shard."""
from __future__ import annotations

import json

import pytest

from tests.helpers import run_submit
from tests.slurm.slurm_helpers import job_id_of, logs_of, wait_for_job

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _samples(out) -> dict[str, bytes]:
    from egovlpv2.data.stream import read_tar

    manifest = json.loads((out / "manifest.json").read_text())
    return {s["__key__"]: s["json"] for shard in manifest["shards"] for s in read_tar(str(out / shard["name"]))}


def test_shards_job_on_two_nodes_matches_one_process(slurm_cluster, tmp_path):
    from egovlpv2.shards.make import ShardRun, make_shards
    from egovlpv2.shards.synthetic import SyntheticSpec, make_synthetic

    src = tmp_path / "src"
    make_synthetic(src, SyntheticSpec(videos=3, mcq_videos=0, clips_per_video=6, clip_spacing_s=12.0, size=32, fps=10.0),
                   progress=False)
    args = ["--task", "egoclip", "--csv", str(src / "egoclip.csv"), "--videos", str(src / "videos"),
            "--workers", "1", "--samples-per-shard", "3", "--no-progress"]
    local, ok = make_shards(ShardRun(task="egoclip", csv=str(src / "egoclip.csv"), videos=str(src / "videos"),
                                     out=str(tmp_path / "local"), workers=1, samples_per_shard=3, progress=False))
    assert ok and local["total_samples"] == 18

    run_dir, out = tmp_path / "shards-run", tmp_path / "cluster"

    def submit_and_wait() -> dict:
        printed = run_submit("--entry", "shards", "--nodes", "2", "--gpus-per-node", "0", "--time", "5",
                             "--output-dir", str(run_dir), *args, "--out", str(out), env={"OMP_NUM_THREADS": "1"})
        job_id = job_id_of(printed)
        assert wait_for_job(job_id, run_dir, timeout=240) == "COMPLETED", logs_of(run_dir, job_id)
        logs = logs_of(run_dir, job_id)
        assert "rank 0/2" in logs and "rank 1/2" in logs
        return json.loads((out / "manifest.json").read_text())

    cluster = submit_and_wait()
    for key in ("total_samples", "total_bytes", "rows_planned", "rows_failed", "failures", "shards"):
        assert cluster[key] == local[key], key
    assert _samples(out) == _samples(tmp_path / "local")

    # A part that lost a shard (a failed task) redoes only that shard when the job runs again.
    names = [s["name"] for s in cluster["shards"]]
    stamps = {n: (out / n).stat().st_mtime_ns for n in names}
    lost = names[1]
    (out / lost).unlink()
    (out / "records" / lost.replace(".tar", ".json")).unlink()
    (out / "manifest.json").unlink()
    again = submit_and_wait()
    assert again["shards"] == cluster["shards"] and (out / lost).is_file()
    assert all((out / n).stat().st_mtime_ns == stamps[n] for n in names if n != lost)
    assert _samples(out) == _samples(tmp_path / "local")
