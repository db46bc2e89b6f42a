"""A SLURM requeue that finds no checkpoint (docs/faults.md R2-14): the run directory was lost (node-local
disk, another path), so the job refuses to start from step 0 unless train.allow_fresh_start_on_requeue."""
from pathlib import Path

import pytest

from egovlpv2.errors import UserError
from egovlpv2.train.config import TrainConfig
from egovlpv2.train.loop import LoopSettings, _refuse_fresh_start_on_requeue
from tests.faults.ranks import ZERO2, run
from tests.helpers import liveness

WORKER = Path(__file__).with_name("fault_worker.py")


@pytest.mark.slow
def test_a_requeued_job_without_a_checkpoint_refuses_to_start_afresh(tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    job = run(WORKER, [ZERO2, out, 4], out / "logs", timeout=liveness(240), expect_failure=True)
    assert job.wait(1) == [2, 2], job.output()
    for rank in (0, 1):
        errors = [line for line in job.output(rank).splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "SLURM_RESTART_COUNT=1" in errors[0], job.output(rank)
        assert "train.allow_fresh_start_on_requeue=true" in errors[0]
    assert not (out / "checkpoints" / "latest").exists()


def test_the_override_allows_a_fresh_start_and_a_first_run_needs_none(tmp_path, monkeypatch):
    assert TrainConfig().allow_fresh_start_on_requeue is False
    settings = LoopSettings(output_dir=str(tmp_path), total_steps=1)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    with pytest.raises(UserError, match="SLURM_RESTART_COUNT=2"):
        _refuse_fresh_start_on_requeue(settings)
    _refuse_fresh_start_on_requeue(LoopSettings(output_dir=str(tmp_path), total_steps=1,
                                                allow_fresh_start_on_requeue=True))
    _refuse_fresh_start_on_requeue(LoopSettings(output_dir=str(tmp_path), total_steps=1, auto_resume=False))
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    _refuse_fresh_start_on_requeue(settings)
