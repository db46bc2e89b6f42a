"""One job per run directory (docs/faults.md R2-1): a second live job is refused naming the first, a killed
holder is taken over without a manual step, another job's step directories are never deleted and ``latest``
never moves backwards."""
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egovlpv2.train.run_owner import OWNER_FILE, Holder, RunDirectoryBusy, claim
from tests.faults.ranks import ZERO2, results, run, start, wait_for
from tests.helpers import liveness

WORKER = Path(__file__).with_name("fault_worker.py")


def latest(out: Path) -> str:
    return (out / "checkpoints" / "latest").read_text().strip()


@pytest.mark.slow
def test_a_second_job_is_refused_naming_the_first_and_takes_over_once_it_is_killed(tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    # Slow enough to outlive the second job's start; no checkpoint, so the takeover trains from step 0.
    first = start(WORKER, [ZERO2, out, 1000, "--step-sleep", 1, "--checkpoint-every", 1000], out / "logs_first")
    monkeypatch.delenv("SLURM_JOB_ID")
    try:
        wait_for(out / "started_rank0", timeout=liveness(240))
        second = start(WORKER, [ZERO2, out, 8], out / "logs_second")
        assert second.wait(liveness(240)) == [2, 2], second.output()
        errors = [line for line in second.output(0).splitlines() if line.startswith("error:")]
        assert len(errors) == 1, second.output(0)
        assert f"pid {first.procs[0].pid}" in errors[0] and f"host {socket.gethostname()}" in errors[0]
        assert "SLURM job 4242" in errors[0] and "scancel 4242" in errors[0]
        assert all(proc.poll() is None for proc in first.procs), "the refused job disturbed the first one"
    finally:
        first.signal_group(signal.SIGKILL)
        first.wait(liveness(60))
    run(WORKER, [ZERO2, out, 8], out / "logs_third", timeout=liveness(240))  # takes over: no manual step
    assert "taking over" in "".join(Path(p).read_text() for p in (out / "logs_third").glob("rank0_*"))
    assert [r["finished"] for r in results(out, 0)] == [True]
    assert not (out / OWNER_FILE).exists()  # released at the end


@pytest.mark.slow
def test_another_jobs_step_directories_are_kept_and_latest_never_moves_back(tmp_path):
    out = tmp_path / "run"
    ckpt = out / "checkpoints"
    # Job A: rank 1 is killed half-way through writing step 6; rank 0 exits on the lost peer.
    run(WORKER, [ZERO2, out, 8, "--save-fault", "kill", "--save-fault-step", 6, "--peer-timeout", 5],
        out / "logs_a", timeout=liveness(240), expect_failure=True)
    torn = sorted(p.name for p in (ckpt / "step00000006").rglob("*") if p.is_file())
    assert latest(out) == "step00000003" and torn
    # Job B takes over (A's pid is gone), resumes from step 3 and writes step 6 again: A's torn step 6 is
    # moved aside, not deleted.
    run(WORKER, [ZERO2, out, 8], out / "logs_b", timeout=liveness(240))
    (kept,) = (ckpt / "replaced").glob("step00000006.*")
    assert sorted(p.name for p in kept.rglob("*") if p.is_file()) == torn
    assert latest(out) == "step00000008"
    # Job C starts afresh (checkpoint.auto_resume=false) in the same directory and saves steps 3 and 4:
    # `latest` stays at step 8, and A's step 3 (kept by B) is moved aside rather than deleted.
    written_by_a = (ckpt / "step00000003" / ".writer").read_text()
    run(WORKER, [ZERO2, out, 4, "--no-resume"], out / "logs_c", timeout=liveness(240))
    assert latest(out) == "step00000008"
    assert (ckpt / "replaced" / f"step00000003.{written_by_a}").is_dir()
    assert {"step00000003", "step00000004", "step00000006", "step00000008"} <= {p.name for p in ckpt.glob("step*")}


def plant(run_dir: Path, **fields) -> None:
    holder = Holder.this_process(lease_s=60.0)
    for key, value in fields.items():
        setattr(holder, key, value)
    (run_dir / OWNER_FILE).write_text(json.dumps(vars(holder)))


def test_which_holders_are_dead_and_taken_over_at_once(tmp_path, monkeypatch):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        plant(tmp_path, pid=sleeper.pid, process_start=None, slurm_job_id="77")
        with pytest.raises(RunDirectoryBusy, match=f"pid {sleeper.pid}, SLURM job 77.*scancel 77"):
            claim(tmp_path)
        monkeypatch.setenv("SLURM_JOB_ID", "77")
        monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # this job's requeue: the old incarnation is over
        claim(tmp_path).release()
        monkeypatch.delenv("SLURM_JOB_ID")
        monkeypatch.delenv("SLURM_RESTART_COUNT")
    finally:
        sleeper.kill()
        sleeper.wait()
    plant(tmp_path, pid=sleeper.pid, process_start=None)  # its process is gone
    claim(tmp_path).release()
    plant(tmp_path, host="node-that-died", renewed_at=time.time() - 1000)  # renewed 1000 s ago, lease 60 s
    ownership = claim(tmp_path)
    assert json.loads((tmp_path / OWNER_FILE).read_text())["token"] == ownership.holder.token
    ownership.release()
    assert not (tmp_path / OWNER_FILE).exists()
