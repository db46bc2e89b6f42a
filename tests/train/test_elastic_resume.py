"""Elastic resume of the model and optimizer: a checkpoint written by 2 ranks under ZeRO-2 or ZeRO-3
resumes on 1 or 4 ranks and under the other stage, with the same fp32 weights and AdamW moments."""
import shutil
from pathlib import Path

import pytest
import torch

from egovlpv2.train.config import OptimConfig
from egovlpv2.train.optim import build_scheduler
from tests.helpers import torchrun

WORKER = Path(__file__).with_name("elastic_worker.py")
TOTAL, STOP = 5, 3


def expected_lr(step: int) -> float:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    scheduler = build_scheduler(optimizer, OptimConfig(lr=1e-2), TOTAL)
    for _ in range(step):
        optimizer.step()
        scheduler.step()
    return scheduler.get_last_lr()[0]


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory):
    """stage -> (run directory, dump prefix) of a 2-rank run stopped after STOP steps, made on first use."""
    made = {}

    def get(stage):
        if stage not in made:
            root = tmp_path_factory.mktemp(f"saved-{stage}")
            torchrun(WORKER, [stage, root / "run", TOTAL, root / "dump", "--stop-after", STOP])
            made[stage] = (root / "run", root / "dump")
        return made[stage]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("saved_stage,resumed_stage,resumed_world", [
    ("zero2", "zero2", 1), ("zero2", "zero2", 4), ("zero3", "zero3", 1), ("zero3", "zero3", 4), ("zero2", "zero3", 2),
])
def test_resume_on_another_world_size_or_stage(saved_runs, tmp_path, saved_stage, resumed_stage, resumed_world):
    saved_run, saved_dump = saved_runs(saved_stage)
    run, dump = tmp_path / "run", tmp_path / "dump"
    shutil.copytree(saved_run, run)
    torchrun(WORKER, [resumed_stage, run, TOTAL, dump, "--resume-at", STOP], nproc=resumed_world)
    saved = torch.load(f"{saved_dump}.saved.pt", weights_only=False)
    loaded, final = (torch.load(f"{dump}.{k}.pt", weights_only=False) for k in ("loaded", "final"))

    assert set(loaded["params"]) == set(saved["params"])
    for name, tensors in saved["params"].items():
        for key in ("fp32", "exp_avg", "exp_avg_sq", "module"):
            assert torch.equal(loaded["params"][name][key], tensors[key]), (name, key)
        assert tensors["exp_avg_sq"].abs().sum() > 0, name  # real moments, not fresh zeros
    assert loaded["global_steps"] == saved["global_steps"] == STOP
    assert loaded["adam_step"] == saved["adam_step"] and loaded["lr"] == saved["lr"] == pytest.approx(expected_lr(STOP))
    # Training continues from there: the step counters and the schedule go on, and the weights move.
    assert final["global_steps"] == TOTAL and final["lr"] == pytest.approx(expected_lr(TOTAL))
    assert final["adam_step"] == [s + TOTAL - STOP for s in saved["adam_step"]]
    assert any(not torch.equal(final["params"][n]["fp32"], t["fp32"]) for n, t in saved["params"].items())
