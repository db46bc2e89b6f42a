"""Tiny 2-node EK-100 MIR fine-tuning through launch/submit.py --entry finetune (CPU, DeepSpeed on gloo).

As for pre-training (test_pretrain_slurm.py), an uninterrupted reference and a run signalled with SLURM's
time-limit USR2 after its first checkpoint are submitted together: the second saves at a step boundary,
requeues, resumes from ``latest`` and ends with the reference's steps and losses. The fine-tuning loader
resumes its position exactly, so the losses match whatever step the signal lands on.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_submit
from tests.slurm.slurm_helpers import (
    JOB_ENV, job_id_of, logs_of, reference_and_signalled, requeues_of, task_result, tensorboard_scalars,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

STEPS = 6


@pytest.fixture(scope="module")
def epic_data(tmp_path_factory) -> dict:
    import torch

    import egovlpv2
    from tests.eval import synthetic_benchmarks as synth

    root = tmp_path_factory.mktemp("slurm-finetune-data")
    train = synth.make_epic_mir(root / "train", repeats=1, seed=50)  # 12 clips: 2 steps of 3 clips x 2 ranks
    torch.manual_seed(0)
    torch.save(egovlpv2.create_model("egovlpv2-tiny", num_frames=2).state_dict(), root / "init.pt")
    return {"shards": train["shards"], "tokenizer": synth.make_tokenizer(root), "init": root / "init.pt"}


def _args(data: dict, run_dir: Path) -> list[str]:
    return [
        "--task", "epic_mir", "--deepspeed", "zero2", "model=egovlpv2-tiny",
        f"init_checkpoint={data['init']}", f"data.train_shards={data['shards']}", f"data.tokenizer={data['tokenizer']}",
        "data.num_frames=2", "data.img_size=64", "data.batch_size=3", "data.num_workers=0",
        f"train.max_steps={STEPS}", "train.grad_checkpointing=false", f"train.output_dir={run_dir}",
        "checkpoint.every_steps=2", "logging.every_steps=1", "logging.progress_bar=false",
    ]


def _submit(data: dict, run_dir: Path) -> str:
    printed = run_submit("--entry", "finetune", "--nodes", "2", "--gpus-per-node", "0", "--cpus-per-task", "1",
                         "--time", "10", "--job-name", run_dir.name, *_args(data, run_dir), env=JOB_ENV)
    return job_id_of(printed)


@pytest.fixture(scope="module")
def runs(slurm_cluster, epic_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm-finetune")
    return reference_and_signalled(lambda run_dir: _submit(epic_data, run_dir), root)


def test_signalled_finetune_requeues_resumes_and_matches_the_uninterrupted_run(runs):
    ref_dir, ref_id, ref_state = runs["ref"]
    assert ref_state == "COMPLETED", logs_of(ref_dir, ref_id)
    reference = task_result(ref_dir, ref_id)
    assert reference.finished and [h["step"] for h in reference.history] == list(range(1, STEPS + 1))

    run_dir, job_id, state = runs["pre"]
    logs = logs_of(run_dir, job_id)
    assert state == "COMPLETED", logs
    assert requeues_of(job_id) == 1, "the signal must requeue the job"
    assert logs.count("Starting with JobEnvironment(job_id=") == 4, "two attempts of two tasks each"

    result = task_result(run_dir, job_id)  # the second attempt's
    assert result.finished and not result.stopped and result.step == STEPS
    resumed_step = result.history[0]["step"] - 1
    assert runs["signalled_after"] <= f"step{resumed_step:08d}" < f"step{STEPS:08d}", "resumed mid-run"
    assert [h["step"] for h in result.history] == list(range(resumed_step + 1, STEPS + 1))
    assert result.history == reference.history[resumed_step:], "the resumed steps differ from the uninterrupted run"
    for tag in ("train/loss", "train/lr"):
        assert tensorboard_scalars(run_dir, tag) == tensorboard_scalars(ref_dir, tag), f"{tag} differs from the reference"


def test_a_finished_finetune_is_not_submitted_again(runs, epic_data):
    run_dir, _, state = runs["ref"]
    assert state == "COMPLETED"
    before = sorted(p.name for p in (run_dir / "slurm").iterdir())
    printed = run_submit("--entry", "finetune", "--nodes", "2", "--gpus-per-node", "0", *_args(epic_data, run_dir), env=JOB_ENV)
    assert "already finished" in printed and f"step {STEPS} of {STEPS}" in printed
    assert sorted(p.name for p in (run_dir / "slurm").iterdir()) == before, "nothing was submitted"
