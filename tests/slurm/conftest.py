"""Fixtures for tests that submit real jobs to the local SLURM cluster (tests/slurm/cluster.sh start).

Without SLURM a developer's run skips them with the reason; under CI (CI=true) an unreachable cluster
is a failure, never a skip.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.helpers import liveness


def _cluster_problem() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM is not installed (sinfo not found); start the test cluster with `bash tests/slurm/cluster.sh start`"
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True,
                             timeout=liveness(20))
    except subprocess.TimeoutExpired:
        return "SLURM is not reachable: sinfo timed out"
    if out.returncode != 0:
        return f"SLURM is not reachable: sinfo failed: {out.stderr.strip()}"
    usable = {line.split()[0] for line in out.stdout.splitlines() if line.split()[1].rstrip("*") in ("idle", "mixed", "allocated")}
    if len(usable) < 2:
        return f"SLURM needs 2 usable nodes for these tests, sinfo shows: {out.stdout.strip() or 'none'}"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    problem = _cluster_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the SLURM tests, but {problem}", pytrace=False)
    pytest.skip(problem)
