"""NaN losses (docs/faults.md #12): counted and reported, fatal after a few in a row, never checkpointed."""
from pathlib import Path

import pytest
import torch

from egovlpv2.train.checkpoint_commit import resumable_tag
from tests.faults.ranks import ZERO2, run

WORKER = Path(__file__).with_name("fault_worker.py")


def nonfinite_counts(tensorboard: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = tensorboard.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    return [e.value for e in acc.Scalars("train/nonfinite_steps")]


@pytest.mark.slow
def test_a_diverged_run_fails_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    # Rank 1's loss is NaN from step 5: steps 5, 6, 7 are non-finite and the third one ends the run.
    job = run(WORKER, [ZERO2, out, 10, "--nan-from-step", 5], out / "logs", timeout=180, expect_failure=True)
    codes = [p.returncode for p in job.procs]
    assert all(codes), codes
    log0 = job.output(0)
    assert "step 5 is non-finite" in log0
    assert "DivergenceError" in log0 and ("non-finite" in log0)
    ckpts = out / "checkpoints"
    tag = resumable_tag(ckpts)
    assert (ckpts / "latest").read_text() == tag
    # Whatever was saved holds finite weights (step 3, or step 6 if DeepSpeed skipped the updates).
    states = torch.load(ckpts / tag / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    assert all(torch.isfinite(v.float()).all() for v in states.values())
    counts = nonfinite_counts(out / "tensorboard")
    assert counts[:4] == [0, 0, 0, 0] and counts[-1] >= 2  # visible in TensorBoard although the loss is not
