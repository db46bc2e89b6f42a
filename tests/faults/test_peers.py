"""A dead or hung peer (docs/faults.md #8), without an elastic agent (as under srun): every other rank exits
non-zero within the configured bound, naming the rank, and the requeued run resumes from the last checkpoint."""
import signal
import time
from pathlib import Path

import pytest

from egovlpv2.dist.watchdog import EXIT_PEER_FAILED, EXIT_STOP_TIMEOUT
from tests.faults.ranks import ZERO2, losses, results, run, start, wait_for
from tests.helpers import liveness

WORKER = Path(__file__).with_name("fault_worker.py")
PEER_TIMEOUT = 5
SLACK = 15  # process exit and a busy machine, scaled by liveness() where it bounds a wait


def survivor_exit(job, died_at: float) -> float:
    code = job.procs[0].wait(timeout=liveness(PEER_TIMEOUT + SLACK + 60))
    assert code == EXIT_PEER_FAILED, f"{code}\n{job.output(0)}"
    return time.monotonic() - died_at


@pytest.mark.slow
def test_a_killed_peer_ends_the_job_in_bounded_time_and_the_requeued_run_resumes(straight, tmp_path):
    out = tmp_path / "run"
    # Rank 1 is SIGKILLed in step 5 (objective call 9); checkpoints exist at step 3.
    job = start(WORKER, [ZERO2, out, 8, "--signal-at-call", 9, "--peer-timeout", PEER_TIMEOUT], out / "logs")
    job.procs[1].wait(timeout=liveness(240))
    waited = survivor_exit(job, time.monotonic())
    assert waited < PEER_TIMEOUT + liveness(SLACK)
    assert "rank 1 is dead or hung" in job.output(0)
    run(WORKER, [ZERO2, out, 8], out / "logs")  # the requeue
    for rank in (0, 1):
        (full,) = results(straight, rank)
        (resumed,) = results(out, rank)
        assert resumed["finished"] and losses(resumed["history"]) == losses(full["history"][3:])


@pytest.mark.slow
def test_a_hung_peer_ends_the_job_in_bounded_time(tmp_path):
    """SIGSTOP keeps the peer's sockets open: no collective error ever comes, only the heartbeats stop."""
    out = tmp_path / "run"
    job = start(WORKER, [ZERO2, out, 8, "--signal-at-call", 9, "--signal", "SIGSTOP",
                         "--peer-timeout", PEER_TIMEOUT], out / "logs")
    try:
        wait_for(out / "checkpoints" / "latest", timeout=240)
        assert survivor_exit(job, time.monotonic()) < 2 * PEER_TIMEOUT + liveness(SLACK)  # the stop lands within a step
        assert "rank 1 is dead or hung" in job.output(0)
    finally:
        job.kill()


@pytest.mark.slow
def test_sigterm_ends_a_rank_stuck_in_a_collective(tmp_path):
    """Rank 1 hangs inside a step (alive, heartbeating); rank 0 waits in the step's collective. A SIGTERM to
    the job sets both stop flags, but no step boundary comes: each rank leaves after train.stop_timeout_s."""
    out = tmp_path / "run"
    job = start(WORKER, [ZERO2, out, 8, "--hang-at-call", 3, "--stop-timeout", 3], out / "logs")
    wait_for(out / "started_rank0", timeout=240)
    wait_for(out / "started_rank1", timeout=60)
    time.sleep(2)
    job.signal_group(signal.SIGTERM)
    began = time.monotonic()
    codes = job.wait(timeout=3 + SLACK + 30)
    assert time.monotonic() - began < 3 + liveness(SLACK)
    assert codes == [EXIT_STOP_TIMEOUT, EXIT_STOP_TIMEOUT], job.output()
    assert "a stop was requested" in job.output(0)
    assert not (out / "checkpoints" / "latest").exists()
