"""Helpers for tests that submit jobs to the local SLURM cluster."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.helpers import liveness
# What the training jobs of these tests run with: DeepSpeed on the CPU, one thread per rank.
JOB_ENV = {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def job_id_of(submit_output: str) -> str:
    first = submit_output.splitlines()[0]
    assert first.startswith("job "), submit_output
    return first.split()[1]


def sacct_state(job_id: str) -> str:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True,
                         timeout=liveness(30))
    return out.stdout.strip().splitlines()[-1].split()[0] if out.stdout.strip() else "UNKNOWN"


def requeues_of(job_id: str) -> int:
    """How often SLURM requeued the job, from accounting (its REQUEUED records; submitit's own "Requeued job"
    log line is lost when the requeue ends scontrol before it returns)."""
    out = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "-o", "State", "-j", job_id], capture_output=True,
                         text=True, check=True, timeout=liveness(30))
    return out.stdout.split().count("REQUEUED")


def logs_of(output_dir: Path, job_id: str) -> str:
    parts = []
    for path in sorted((output_dir / "slurm" / job_id).glob("*_log.*")):
        parts.append(f"===== {path.name}\n{path.read_text(errors='replace')[-6000:]}")
    return "\n".join(parts)


def wait_for_job(job_id: str, output_dir: Path, timeout: float = 300) -> str:
    """Poll accounting until the job ends; return its final state (the logs are in the assertion message)."""
    timeout = liveness(timeout)
    deadline = time.monotonic() + timeout
    state = "UNKNOWN"
    while time.monotonic() < deadline:
        state = sacct_state(job_id)
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"):
            return state
        time.sleep(1)
    subprocess.run(["scancel", job_id], timeout=liveness(30))
    pytest.fail(f"job {job_id} did not finish within {timeout:.0f} s (last state {state})\n{logs_of(output_dir, job_id)}")


def reference_and_signalled(submit: Callable[[Path], str], root: Path) -> dict:
    """Submit two identical runs with ``submit(run_dir) -> job id``: an uninterrupted reference, and one that
    gets the time-limit signal (what SLURM does --signal-delay-s before the limit: USR2 to every task) once
    its first checkpoint is on disk. Waits for both; returns (run_dir, job_id, state) of each and the tag
    of the checkpoint the signal followed."""
    ref_dir, pre_dir = root / "reference", root / "preempted"
    ref_id, pre_id = submit(ref_dir), submit(pre_dir)
    latest = pre_dir / "checkpoints" / "latest"
    bound = liveness(240)
    deadline = time.monotonic() + bound
    while not latest.is_file():
        if time.monotonic() > deadline:
            subprocess.run(["scancel", ref_id, pre_id], timeout=liveness(30))
            pytest.fail(f"no checkpoint from job {pre_id} within {bound:.0f} s\n{logs_of(pre_dir, pre_id)}")
        time.sleep(0.5)
    signalled_after = latest.read_text().strip()
    subprocess.run(["scancel", "--signal=USR2", pre_id], check=True, timeout=liveness(30))
    ref_state = wait_for_job(ref_id, ref_dir, timeout=300)
    pre_state = wait_for_job(pre_id, pre_dir, timeout=300)
    return {"ref": (ref_dir, ref_id, ref_state), "pre": (pre_dir, pre_id, pre_state), "signalled_after": signalled_after}


def task_result(run_dir: Path, job_id: str, task: int = 0):
    """What the task's entry point returned in the job's last attempt (failing the test on an exception)."""
    from submitit.core.utils import pickle_load

    outcome, result = pickle_load(run_dir / "slurm" / job_id / f"{job_id}_{task}_result.pkl")
    assert outcome == "success", result
    return result


def tensorboard_scalars(run_dir: Path, tag: str) -> dict[int, float]:
    """step -> value of a TensorBoard scalar of the run, across attempts; a step logged twice fails."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    events = acc.Scalars(tag)
    assert len({e.step for e in events}) == len(events), f"{tag}: a step logged twice"
    return {event.step: event.value for event in events}
