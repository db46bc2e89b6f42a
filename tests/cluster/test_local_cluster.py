"""``--cluster local``: the same launch path without SLURM (tasks as processes of this machine)."""
from __future__ import annotations

import re
import time

import pytest

from tests.helpers import REPO, SUBMIT, liveness, run_submit

pytestmark = pytest.mark.slow


def test_local_cluster_runs_two_tasks_from_the_code_snapshot(tmp_path):
    printed = run_submit("--entry", "check", "--cluster", "local", "--gpus-per-node", "0", "--tasks-per-node", "2",
                         "--time", "5", "--output-dir", str(tmp_path / "run"))
    job_id = re.match(r"job (\S+) submitted", printed).group(1)
    code_dir = re.search(r"code snapshot: (\S+)", printed).group(1)
    import submitit

    job = submitit.local.local.LocalJob(folder=tmp_path / "run" / "slurm" / "%j", job_id=job_id, tasks=(0, 1))
    deadline = time.monotonic() + liveness(120)
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.5)
    results = job.results()
    assert [r["rank"] for r in results] == [0, 1] and {r["all_reduce"] for r in results} == {3.0}
    assert {r["code"] for r in results} == {code_dir}


def test_local_cluster_cannot_span_nodes(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(SUBMIT), "--entry", "check", "--cluster", "local", "--nodes", "2",
                          "--gpus-per-node", "0", "--output-dir", str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                         timeout=liveness(120))
    assert out.returncode != 0 and "--nodes 1" in out.stderr
