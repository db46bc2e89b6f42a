"""The loop on 2 real ranks: exact resume after a kill and after a preemption, retention, finished runs."""
import json
from pathlib import Path

import pytest

from tests.helpers import torchrun

WORKER = Path(__file__).with_name("toy_worker.py")
ZERO2 = "zero2"  # the shipped DeepSpeed config


def results(run_dir: Path, rank: int) -> list[dict]:
    files = sorted(run_dir.glob(f"result_rank{rank}_*.json"), key=lambda p: p.stat().st_mtime)
    return [json.loads(p.read_text()) for p in files]


def losses(history):
    return [(h["step"], h["loss"], h["mse"], h["grad_norm"]) for h in history]


@pytest.mark.slow
def test_killed_and_preempted_runs_resume_bitwise(tmp_path):
    straight, killed, preempted = tmp_path / "straight", tmp_path / "killed", tmp_path / "preempted"
    torchrun(WORKER, [ZERO2, straight, 8])
    # Rank 1 is SIGKILLed in step 5 (micro-batch 9): the run dies; checkpoints exist at step 3 only.
    torchrun(WORKER, [ZERO2, killed, 8, "--signal-at-call", 9, "--kill-with", "SIGKILL"], expect_failure=True)
    assert (killed / "checkpoints" / "latest").read_text().strip() == "step00000003"
    torchrun(WORKER, [ZERO2, killed, 8])
    # Rank 1 alone gets SIGUSR1 in step 5; rank 0 never does, yet both must stop after step 5.
    torchrun(WORKER, [ZERO2, preempted, 8, "--signal-at-call", 9])
    torchrun(WORKER, [ZERO2, preempted, 8])
    torchrun(WORKER, [ZERO2, straight, 8])  # a finished run directory is not trained again

    for rank in (0, 1):
        full, again = results(straight, rank)
        assert full["finished"] and full["step"] == 8
        assert again["finished"] and again["history"] == []
        (resumed,) = results(killed, rank)
        # Bitwise on CPU: model, optimizer, schedule, RNG and loader position are restored exactly.
        assert losses(resumed["history"]) == losses(full["history"][3:])
        stopped, rest = results(preempted, rank)
        assert stopped["stopped"] and stopped["step"] == 5
        assert losses(stopped["history"] + rest["history"]) == losses(full["history"])

    history = results(straight, 0)[0]["history"]
    assert all(abs(h["loss"]) < 1e6 for h in history)
    assert sum(h["loss"] for h in history[-3:]) < sum(h["loss"] for h in history[:3])  # it learns
    ckpts = straight / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step00000008"
    assert sorted(p.name for p in ckpts.glob("step*")) == ["step00000006", "step00000008"]  # keep_last=2
    scalars = results(straight, 0)[0]["scalars"]
    assert {"perf/data_wait_fraction/rank0", "perf/data_wait_fraction/rank1", "perf/data_wait_fraction/worst",
            "train/mse", "train/grad_norm", "train/lr", "perf/clips_per_s"} <= set(scalars)
    # 16 micro-batches of a 7-batch epoch: each rank is in epoch 2; the counts are summed over ranks.
    assert scalars["data/skipped/toy_reason"] == 4
    assert list((straight / "tensorboard").glob("events.out.tfevents.*"))
