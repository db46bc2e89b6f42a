"""Logging output is best-effort (docs/faults.md R2-12): a full disk under TensorBoard or train.log warns
once and training goes on; the checkpoints are still written."""
import logging
from pathlib import Path

import pytest

from egovlpv2.train.checkpoint_commit import why_incomplete
from egovlpv2.train.monitor import BestEffortFileHandler
from tests.faults.ranks import ZERO2, results, run
from tests.helpers import liveness

WORKER = Path(__file__).with_name("fault_worker.py")


@pytest.mark.slow
def test_a_full_disk_under_tensorboard_warns_once_and_training_goes_on(tmp_path):
    out = tmp_path / "run"
    job = run(WORKER, [ZERO2, out, 4, "--tensorboard-enospc"], out / "logs", timeout=liveness(240))
    warnings = [line for line in job.output(0).splitlines() if "TensorBoard output stops" in line]
    assert len(warnings) == 1 and "No space left on device" in warnings[0], job.output(0)
    assert [r["finished"] for r in results(out, 0)] == [True]
    ckpt = out / "checkpoints"
    assert (ckpt / "latest").read_text() == "step00000004" and why_incomplete(ckpt / "step00000004") is None


def test_a_full_disk_under_train_log_warns_once_and_logging_goes_on(caplog):
    """/dev/full answers every write with ENOSPC, as a full disk does."""
    handler = BestEffortFileHandler("/dev/full")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        for i in range(3):
            logging.getLogger("egovlpv2.test").warning("step %d", i)
    finally:
        root.removeHandler(handler)
    stops = [r for r in caplog.records if "log file output stops" in r.getMessage()]
    assert len(stops) == 1 and "No space left on device" in stops[0].getMessage()
    assert [r.getMessage() for r in caplog.records if r.name == "egovlpv2.test"] == ["step 0", "step 1", "step 2"]
