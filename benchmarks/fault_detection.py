"""Time to detect each runtime fault on 2 CPU ranks of the toy task (docs/faults.md): seconds from the fault
to the surviving rank's exit, with train.peer_timeout_s=5 and train.stop_timeout_s=3.

Usage: PYTHONPATH=. DS_ACCELERATOR=cpu python benchmarks/fault_detection.py
"""
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults.ranks import REPO, ZERO2, start, wait_for  # noqa: E402

WORKER = REPO / "tests" / "faults" / "fault_worker.py"


def measure(name: str, args: list, trigger) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        job = start(WORKER, [ZERO2, out, 8, "--peer-timeout", 5, "--stop-timeout", 3, *args], out / "logs")
        try:
            fault_at = trigger(job, out)
            code = job.procs[0].wait(timeout=300)
            print(f"{name:<44} rank 0 exit {code:>3} after {time.monotonic() - fault_at:5.1f} s", flush=True)
        finally:
            job.kill()


def peer_exit(job, out):
    job.procs[1].wait(timeout=300)
    return time.monotonic()


def peer_stopped(job, out):
    stat = Path(f"/proc/{job.procs[1].pid}/stat")
    while stat.read_text().split(") ", 1)[1][0] != "T":
        time.sleep(0.05)
    return time.monotonic()


def sigterm_group(job, out):
    wait_for(out / "started_rank1", timeout=300)
    time.sleep(2)
    job.signal_group(signal.SIGTERM)
    return time.monotonic()


if __name__ == "__main__":
    measure("rank 1 SIGKILLed mid-step", ["--signal-at-call", 9], peer_exit)
    measure("rank 1 SIGSTOPped (hung, sockets open)", ["--signal-at-call", 9, "--signal", "SIGSTOP"], peer_stopped)
    measure("rank 1 ENOSPC while saving its shard", ["--save-fault", "enospc", "--save-fault-step", 3], peer_exit)
    measure("SIGTERM to the group, rank 1 stuck in a step", ["--hang-at-call", 3], sigterm_group)
