"""Time to detect the round-2 run-directory and stop faults (docs/faults.md R2-1, R2-6, R2-13, R2-14) on the
toy task with 2 CPU ranks, and the ownership decisions themselves in-process.

Usage: PYTHONPATH=. DS_ACCELERATOR=cpu python benchmarks/run_dir_faults.py
"""
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from egovlpv2.train.run_owner import OWNER_FILE, Holder, RunDirectoryBusy, claim  # noqa: E402
from tests.faults.ranks import REPO, ZERO2, start, wait_for  # noqa: E402

WORKER = REPO / "tests" / "faults" / "fault_worker.py"


def timed(name: str, fn) -> None:
    began = time.monotonic()
    outcome = fn()
    print(f"{name:<58} {outcome:<28} {time.monotonic() - began:6.2f} s", flush=True)


def planted(run_dir: Path, **fields) -> None:
    holder = Holder.this_process(lease_s=5.0)
    for key, value in fields.items():
        setattr(holder, key, value)
    (run_dir / OWNER_FILE).write_text(json.dumps(vars(holder)))


def claim_outcome(run_dir: Path) -> str:
    try:
        claim(run_dir).release()
        return "taken over"
    except RunDirectoryBusy:
        return "refused"


def ownership() -> None:
    run_dir = Path(tempfile.mkdtemp())
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    planted(run_dir, pid=sleeper.pid, process_start=None)
    timed("live holder on this host", lambda: claim_outcome(run_dir))
    sleeper.kill()
    sleeper.wait()
    timed("holder on this host whose process is gone", lambda: claim_outcome(run_dir))
    planted(run_dir, host="other-node")
    timed("holder on a dead node (lease 5 s, last renewal now)", lambda: claim_outcome(run_dir))


def job(name: str, args: list, trigger, expect: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        started = start(WORKER, [ZERO2, out, *args], out / "logs")
        try:
            fault_at = trigger(started, out)
            codes = started.wait(timeout=600)
            print(f"{name:<58} exit {codes} ({expect}) {time.monotonic() - fault_at:6.1f} s", flush=True)
        finally:
            started.kill()


def launched(job, out):
    return time.monotonic()


def sigterm(job, out):
    wait_for(out / "started_rank1", timeout=600)
    time.sleep(5)  # past the first steps
    job.signal_group(signal.SIGTERM)
    return time.monotonic()


def main() -> None:
    ownership()
    job("SIGTERM, save 15 s slower, train.stop_timeout_s=5", [1000, "--step-sleep", 0.1, "--checkpoint-every", 1000,
        "--slow-save-s", 15, "--stop-timeout", 5], sigterm, "saved")
    job("rank 1 holds the GIL 12 s, train.peer_timeout_s=4 (4 steps)", [4, "--peer-timeout", 4,
        "--gil-hold-at-call", 3, "--gil-hold-s", 12], launched, "whole run")
    import os
    os.environ["SLURM_RESTART_COUNT"] = "1"
    job("requeue (SLURM_RESTART_COUNT=1) without a checkpoint", [4], launched, "start to exit")


if __name__ == "__main__":
    main()
