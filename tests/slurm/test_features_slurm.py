"""Dense feature extraction as a 2-task job through launch/submit.py, requeued on the time limit mid-way.

Clip i belongs to task i % 2. After the first clip is written the job gets SLURM's time-limit signal (USR2):
each task finishes its clip in progress, the job requeues, and the second attempt skips the finished clips.
In the end every clip has exactly one output, written once, by its own task.
"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.slurm.slurm_helpers import job_id_of, logs_of, requeues_of, task_result, wait_for_job
from tests.helpers import liveness, run_submit

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLIPS = 24  # 12 per task, about 0.5 s each: the signal lands mid-way


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    import torch

    import egovlpv2
    from egovlpv2.shards.synthetic import write_video
    from tests.eval import synthetic_benchmarks as synth

    root = tmp_path_factory.mktemp("slurm-features")
    videos = root / "videos"
    videos.mkdir()
    for i in range(CLIPS):
        write_video(videos / f"clip{i:02d}.mp4", synth.render(i % 3, i % 4, 6.0, i), synth.FPS, gop=8)
    # a list of videos, as for one's own collection (paths relative to the list's folder)
    (root / "videos.txt").write_text("".join(f"videos/clip{i:02d}.mp4\n" for i in range(CLIPS)))
    torch.manual_seed(0)
    torch.save(egovlpv2.create_model("egovlpv2-tiny", num_frames=4).state_dict(), root / "tiny.pt")
    return {"root": root, "videos": videos, "checkpoint": root / "tiny.pt"}


def _args(inputs: dict, out: Path) -> list[str]:
    return ["--preset", "dense", "--checkpoint", str(inputs["checkpoint"]), "--videos", str(inputs["root"] / "videos.txt"),
            "--out", str(out), "--model", "egovlpv2-tiny", "--frames", "4", "--windows-per-second", "8",
            "--batch-size", "16"]


def _outputs(out: Path) -> dict[str, tuple[int, int]]:
    return {p.stem: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.pt")}


def test_features_job_is_requeued_and_writes_every_clip_once(slurm_cluster, inputs):
    run_dir, out = inputs["root"] / "run", inputs["root"] / "features"
    printed = run_submit("--entry", "features", "--nodes", "2", "--gpus-per-node", "0", "--cpus-per-task", "1",
                         "--time", "10", "--job-name", "features", "--output-dir", str(run_dir), *_args(inputs, out),
                         env={"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    job_id = job_id_of(printed)

    bound = liveness(240)
    deadline = time.monotonic() + bound
    while not any(out.glob("*.pt")):
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], timeout=liveness(30))
            pytest.fail(f"no clip from job {job_id} within {bound:.0f} s\n{logs_of(run_dir, job_id)}")
        time.sleep(0.2)
    # what SLURM does --signal-delay-s before the time limit: USR2 to every task
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=liveness(30))
    before_requeue = _outputs(out)

    state = wait_for_job(job_id, run_dir, timeout=300)
    logs = logs_of(run_dir, job_id)
    assert state == "COMPLETED", logs
    assert requeues_of(job_id) == 1, "the signal must requeue the job"
    assert logs.count("Starting with JobEnvironment(job_id=") == 4, "two attempts of two tasks each"

    clips = [f"clip{i:02d}" for i in range(CLIPS)]
    after = _outputs(out)
    assert sorted(after) == clips and sorted(p.stem for p in out.glob("*.json")) == clips
    assert not list(out.glob(".*.tmp")), "no partial write is left behind"
    for clip, identity in before_requeue.items():
        assert after[clip] == identity, f"{clip} was rewritten after the requeue"
    # one "wrote" line per clip over both attempts, from the task that owns it (clip i -> rank i % 2)
    wrote = re.findall(r"rank (\d) wrote clip (clip\d\d) ", logs)
    assert sorted(clip for _, clip in wrote) == clips, wrote
    assert all(int(rank) == int(clip[4:]) % 2 for rank, clip in wrote)

    second = [task_result(run_dir, job_id, task) for task in (0, 1)]  # the second attempt's
    resumed = sum(len(result.written) for result in second)
    assert 0 < resumed < CLIPS, "the second attempt continued mid-way"
    assert all(result.left == 0 and not result.stopped for result in second)

    printed = run_submit("--entry", "features", "--nodes", "2", "--gpus-per-node", "0",
                         "--output-dir", str(run_dir), *_args(inputs, out))
    assert f"all {CLIPS} clips already have features; nothing to submit" in printed
