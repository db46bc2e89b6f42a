"""Helpers for tests that submit jobs to the local SLURM cluster."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUBMIT = REPO / "launch" / "submit.py"


def run_submit(*args: str, env: dict | None = None, timeout: float = 120) -> str:
    """Run launch/submit.py and return its stdout (failing the test with its output on error)."""
    out = subprocess.run([sys.executable, str(SUBMIT), *args], capture_output=True, text=True, timeout=timeout,
                         cwd=REPO, env={**os.environ, **(env or {})})
    assert out.returncode == 0, f"submit.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def job_id_of(submit_output: str) -> str:
    first = submit_output.splitlines()[0]
    assert first.startswith("job "), submit_output
    return first.split()[1]


def sacct_state(job_id: str) -> str:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True, timeout=30)
    return out.stdout.strip().splitlines()[-1].split()[0] if out.stdout.strip() else "UNKNOWN"


def logs_of(output_dir: Path, job_id: str) -> str:
    parts = []
    for path in sorted((output_dir / "slurm" / job_id).glob("*_log.*")):
        parts.append(f"===== {path.name}\n{path.read_text(errors='replace')[-6000:]}")
    return "\n".join(parts)


def wait_for_job(job_id: str, output_dir: Path, timeout: float = 300) -> str:
    """Poll accounting until the job ends; return its final state (the logs are in the assertion message)."""
    deadline = time.monotonic() + timeout
    state = "UNKNOWN"
    while time.monotonic() < deadline:
        state = sacct_state(job_id)
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"):
            return state
        time.sleep(1)
    subprocess.run(["scancel", job_id], timeout=30)
    pytest.fail(f"job {job_id} did not finish within {timeout}s (last state {state})\n{logs_of(output_dir, job_id)}")
