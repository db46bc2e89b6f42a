"""A 2-node job through launch/submit.py on the local SLURM cluster: environment mapping and snapshot."""
from __future__ import annotations

import ast
import re

import pytest

from tests.helpers import run_submit
from tests.slurm.slurm_helpers import job_id_of, logs_of, wait_for_job

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_two_node_all_reduce_runs_from_the_code_snapshot(slurm_cluster, tmp_path):
    out_dir = tmp_path / "check"
    printed = run_submit("--entry", "check", "--nodes", "2", "--gpus-per-node", "0", "--time", "5",
                         "--output-dir", str(out_dir))
    job_id = job_id_of(printed)
    assert f"sacct -j {job_id}" in printed and f"{out_dir}/slurm/{job_id}/{job_id}_0_log.out" in printed
    code_dir = re.search(r"code snapshot: (\S+)", printed).group(1)

    state = wait_for_job(job_id, out_dir, timeout=120)
    logs = logs_of(out_dir, job_id)
    assert state == "COMPLETED", logs
    line = next(l for l in (out_dir / "slurm" / job_id / f"{job_id}_0_log.out").read_text().splitlines()
                if l.startswith("check passed"))
    tasks = ast.literal_eval(re.search(r"tasks (\[.*\]);", line).group(1))
    assert sorted(tasks) == [(0, "ego-n1", "cpu"), (1, "ego-n2", "cpu")], line  # one task on each node
    assert line.endswith(f"code {code_dir}"), "the job must import the snapshot, not the checkout"
    # accounting runs, so submitit's own view of the job is real, not UNKNOWN
    import submitit

    job = submitit.SlurmJob(folder=out_dir / "slurm" / "%j", job_id=job_id, tasks=(0, 1))
    assert job.state == "COMPLETED"
    assert [r["all_reduce"] for r in job.results()] == [3.0, 3.0]
