"""A 2-node job through launch/submit.py on the local SLURM cluster: environment mapping and snapshot."""
from __future__ import annotations

import ast
import errno
import re
import socket
import subprocess
import sys

import pytest

from egovlpv2.dist.slurm import master_port
from tests.helpers import REPO, SUBMIT, liveness, run_submit
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


def test_a_submission_that_sbatch_rejects_is_one_error_line(slurm_cluster, tmp_path):
    """The test cluster has no GPUs: a --gpus-per-node request is an invalid gres for its sbatch."""
    out = subprocess.run([sys.executable, str(SUBMIT), "--entry", "check", "--nodes", "1", "--gpus-per-node", "1",
                          "--time", "5", "--output-dir", str(tmp_path / "check")], capture_output=True, text=True,
                         timeout=liveness(120), cwd=REPO)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sbatch rejected the job: "), out.stderr
    assert "Invalid generic resource (gres) specification" in lines[0]


def _next_job_id() -> int:
    """The id the cluster gives the next job (a held job is submitted and cancelled; tests run one at a time)."""
    held = subprocess.run(["sbatch", "--hold", "--parsable", "--time", "1", "--output", "/dev/null", "--wrap", "true"],
                          capture_output=True, text=True, check=True, timeout=liveness(30)).stdout.strip()
    subprocess.run(["scancel", held], check=True, timeout=liveness(30))
    return int(held.split(";")[0]) + 1


def test_a_job_whose_derived_port_is_taken_on_the_first_node_still_joins(slurm_cluster, tmp_path):
    """Before, task 0's store failed with EADDRINUSE and task 1 waited for it until the time limit."""
    out_dir = tmp_path / "check"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        expected_id = _next_job_id()
        taken = master_port(str(expected_id))
        try:
            squatter.bind(("", taken))  # every node of the test cluster is this host
            squatter.listen()
        except OSError as exc:  # another program holds it already: the same case
            assert exc.errno == errno.EADDRINUSE, exc
        job_id = job_id_of(run_submit("--entry", "check", "--nodes", "2", "--gpus-per-node", "0", "--time", "5",
                                      "--output-dir", str(out_dir)))
        assert job_id == str(expected_id)
        state = wait_for_job(job_id, out_dir, timeout=120)
    logs = logs_of(out_dir, job_id)
    assert state == "COMPLETED", logs
    assert f"port {taken} is taken on" in logs
    masters = set(re.findall(r"master ego-n1:(\d+)", logs))
    assert len(masters) == 1 and str(taken) not in masters, logs  # both tasks dialled the replacement
