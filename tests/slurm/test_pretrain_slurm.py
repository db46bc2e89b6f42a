"""Tiny 2-node pre-training through launch/submit.py on the local SLURM cluster (CPU, DeepSpeed on gloo).

Two runs are submitted together: an uninterrupted reference, and one that receives SLURM's time-limit
signal (USR2) after its first checkpoint. The second must save at a step boundary on every rank,
requeue itself, resume from ``latest`` and end with the reference's step count and losses.

Exact equality needs the data stream to resume exactly. The pre-training stream restores its read
position but not what sat in its shuffle buffer and scene window (a documented bound, tests/data), except
at an epoch boundary. Here an epoch is one step (16 samples, 8 anchors on each of 2 ranks), so every
checkpoint sits on a boundary and what is compared is the launcher's part: the right checkpoint, model,
optimizer, scheduler, RNG and step restored after the requeue.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.slurm.slurm_helpers import job_id_of, logs_of, run_submit, wait_for_job

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

STEPS = 8
ENV = {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    from egovlpv2.data.shard_tasks import ShardRun, make_shards
    from egovlpv2.data.synthetic import SyntheticSpec, make_synthetic

    root = tmp_path_factory.mktemp("slurm-demo-data")
    make_synthetic(root / "src", SyntheticSpec(videos=2, mcq_videos=0, clips_per_video=8, size=64), progress=False)
    _, ok = make_shards(ShardRun(task="egoclip", videos=str(root / "src" / "videos"), csv=str(root / "src" / "egoclip.csv"),
                                 out=str(root / "shards"), workers=1, samples_per_shard=8, progress=False))
    assert ok
    return root


def _recipe_args(data: Path, run_dir: Path) -> list[str]:
    return [
        "--config", "demo", "--deepspeed", "zero2",
        f"data.shards={data / 'shards'}", f"data.tokenizer={data / 'src' / 'tokenizer'}",
        "data.batch_size=8", "data.num_workers=0", f"train.max_steps={STEPS}", f"train.output_dir={run_dir}",
        "checkpoint.every_steps=2", "logging.every_steps=1", "logging.progress_bar=false", "eval.egomcq_shards=null",
    ]


def _submit(data: Path, run_dir: Path) -> str:
    printed = run_submit("--nodes", "2", "--gpus-per-node", "0", "--cpus-per-task", "1", "--time", "10",
                         "--job-name", run_dir.name, *_recipe_args(data, run_dir), env=ENV)
    return job_id_of(printed)


def _scalars(run_dir: Path, tag: str) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return {event.step: event.value for event in acc.Scalars(tag)}


def _result(run_dir: Path, job_id: str):
    from submitit.core.utils import pickle_load

    outcome, result = pickle_load(run_dir / "slurm" / job_id / f"{job_id}_0_result.pkl")
    assert outcome == "success", result
    return result


@pytest.fixture(scope="module")
def runs(slurm_cluster, demo_data, tmp_path_factory):
    """Submit both runs, signal the second after its first checkpoint, wait for both."""
    root = tmp_path_factory.mktemp("slurm-pretrain")
    ref_dir, pre_dir = root / "reference", root / "preempted"
    ref_id, pre_id = _submit(demo_data, ref_dir), _submit(demo_data, pre_dir)

    latest = pre_dir / "checkpoints" / "latest"
    deadline = time.monotonic() + 240
    while not latest.is_file():
        if time.monotonic() > deadline:
            subprocess.run(["scancel", ref_id, pre_id], timeout=30)
            pytest.fail(f"no checkpoint from job {pre_id} within 240 s\n{logs_of(pre_dir, pre_id)}")
        time.sleep(0.5)
    signalled_after = latest.read_text().strip()
    # what SLURM does --signal-delay-s before the time limit: USR2 to every task of the job's steps
    subprocess.run(["scancel", "--signal=USR2", pre_id], check=True, timeout=30)

    ref_state = wait_for_job(ref_id, ref_dir, timeout=300)
    pre_state = wait_for_job(pre_id, pre_dir, timeout=300)
    return {"ref": (ref_dir, ref_id, ref_state), "pre": (pre_dir, pre_id, pre_state), "signalled_after": signalled_after}


def test_two_node_pretraining_completes_with_checkpoint_and_tensorboard(runs):
    run_dir, job_id, state = runs["ref"]
    assert state == "COMPLETED", logs_of(run_dir, job_id)
    result = _result(run_dir, job_id)
    assert result.finished and not result.stopped and result.step == STEPS
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == f"step{STEPS:08d}"
    assert (run_dir / "config.yaml").is_file()
    losses = _scalars(run_dir, "train/loss")
    assert sorted(losses) == list(range(1, STEPS + 1))
    # both tasks ran on their own node and were one process group of two
    logs = logs_of(run_dir, job_id)
    assert "node=0(2), global_rank=0(2)" in logs and "node=1(2), global_rank=1(2)" in logs
    assert "world size 2" in (run_dir / "train.log").read_text()


def test_signalled_run_saves_requeues_and_matches_the_uninterrupted_run(runs):
    ref_dir, _, _ = runs["ref"]
    run_dir, job_id, state = runs["pre"]
    logs = logs_of(run_dir, job_id)
    assert state == "COMPLETED", logs
    assert f"Requeued job {job_id}" in logs, "the signal must requeue the job"
    assert logs.count("Starting with JobEnvironment(job_id=") == 4, "two attempts of two tasks each"

    train_log = (run_dir / "train.log").read_text()
    assert "stop requested: saved step" in train_log
    resumed = [line for line in train_log.splitlines() if "resumed from" in line]
    assert len(resumed) == 1, train_log
    resumed_step = int(resumed[0].rsplit("step ", 1)[1].rstrip(")"))
    assert runs["signalled_after"] <= f"step{resumed_step:08d}" < f"step{STEPS:08d}", "resumed mid-run"

    result = _result(run_dir, job_id)  # the second attempt's
    assert result.finished and not result.stopped and result.step == STEPS
    assert [h["step"] for h in result.history] == list(range(resumed_step + 1, STEPS + 1))
    for tag in ("train/loss", "train/egonce", "train/mlm", "train/vtm", "train/grad_norm", "train/lr"):
        assert _scalars(run_dir, tag) == _scalars(ref_dir, tag), f"{tag} differs from the uninterrupted run"


def test_a_finished_run_is_not_submitted_again(runs, demo_data):
    run_dir, _, state = runs["ref"]
    assert state == "COMPLETED"
    before = sorted(p.name for p in (run_dir / "slurm").iterdir())
    printed = run_submit("--nodes", "2", "--gpus-per-node", "0", *_recipe_args(demo_data, run_dir), env=ENV)
    assert "already finished" in printed and f"step {STEPS} of {STEPS}" in printed
    assert sorted(p.name for p in (run_dir / "slurm").iterdir()) == before, "nothing was submitted"
