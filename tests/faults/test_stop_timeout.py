"""The stop timeout bounds reaching the step boundary, not the save there (docs/faults.md R2-6): a save that
takes longer than ``train.stop_timeout_s`` after SIGTERM still completes, and the run exits 0."""
import signal
import time
from pathlib import Path

import pytest

from egovlpv2.train.checkpoint_commit import why_incomplete
from tests.faults.ranks import ZERO2, results, start, wait_for
from tests.helpers import liveness

WORKER = Path(__file__).with_name("fault_worker.py")
STOP_TIMEOUT = liveness(5)  # far more than a step of the toy run takes
SLOW_SAVE = 3 * STOP_TIMEOUT  # rank 0's save takes this much longer than usual


@pytest.mark.slow
def test_a_slow_save_after_sigterm_outlasts_a_short_stop_timeout(tmp_path):
    out = tmp_path / "run"
    job = start(WORKER, [ZERO2, out, 1000, "--step-sleep", 0.1, "--checkpoint-every", 1000,
                         "--slow-save-s", SLOW_SAVE, "--stop-timeout", STOP_TIMEOUT], out / "logs")
    try:
        wait_for(out / "started_rank0", timeout=liveness(240))
        wait_for(out / "started_rank1", timeout=liveness(60))
        time.sleep(liveness(3))  # past the first steps, which set up the engine's buffers
        job.signal_group(signal.SIGTERM)
        codes = job.wait(liveness(120))
    finally:
        job.kill()
    assert codes == [0, 0], job.output()
    (stopped,) = results(out, 0)
    tag = f"step{stopped['step']:08d}"
    assert stopped["stopped"] and (out / "checkpoints" / "latest").read_text() == tag
    assert why_incomplete(out / "checkpoints" / tag) is None
