"""Submission pieces that need no cluster: time limits, cluster shape, task environment, dry-run."""
from __future__ import annotations

import shlex
import subprocess
import sys
from types import SimpleNamespace

import pytest

from egovlpv2.dist.slurm import PORT_BASE, PORT_SPAN, cuda_device_index, master_port, task_env
from egovlpv2.launch.submission import ClusterSpec, time_to_minutes
from tests.slurm.slurm_helpers import REPO, SUBMIT


@pytest.mark.parametrize(
    "text, minutes",
    [("90", 90), ("30:30", 31), ("24:00:00", 1440), ("1-00", 1440), ("2-12:30", 3630), ("0-00:00:59", 1)],
)
def test_time_to_minutes_reads_slurm_syntax(text, minutes):
    assert time_to_minutes(text) == minutes


@pytest.mark.parametrize("text", ["", "1h", "00:00:00", "1-2-3", "12:ab"])
def test_time_to_minutes_rejects_nonsense(text):
    with pytest.raises(ValueError):
        time_to_minutes(text)


def test_cluster_spec_runs_one_task_per_gpu():
    assert ClusterSpec(nodes=8, gpus_per_node=8).world_size == 64
    assert ClusterSpec(nodes=2, gpus_per_node=0).tasks_per_node == 1
    with pytest.raises(ValueError, match="one task per GPU"):
        ClusterSpec(gpus_per_node=8, tasks_per_node=4)
    with pytest.raises(ValueError, match="--mem"):
        ClusterSpec(mem="400 GB")
    with pytest.raises(ValueError, match="signal-delay"):
        ClusterSpec(time="1", signal_delay_s=120)


def _job_env(**kw):
    base = dict(job_id="4242", num_tasks=16, num_nodes=2, global_rank=9, local_rank=1, hostnames=["gpu017", "gpu018"])
    return SimpleNamespace(**{**base, **kw})


def test_task_env_maps_submitit_to_torch_variables():
    env = task_env(_job_env())
    assert env.as_environ() == {
        "RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "8",
        "MASTER_ADDR": "gpu017", "MASTER_PORT": str(master_port("4242")),
    }
    # every task of the job derives the same port; a one-node job stays on loopback
    assert task_env(_job_env(global_rank=0, local_rank=0)).master_port == env.master_port
    assert task_env(_job_env(num_tasks=8, num_nodes=1)).master_addr == "127.0.0.1"
    with pytest.raises(RuntimeError, match="same number of tasks"):
        task_env(_job_env(num_tasks=15))


def test_master_port_is_in_range_and_differs_between_jobs():
    ports = {master_port(str(job)) for job in range(1000, 1100)}
    assert len(ports) == 100 and all(PORT_BASE <= p < PORT_BASE + PORT_SPAN for p in ports)
    assert master_port("777_1") != master_port("777_2")
    with pytest.raises(ValueError):
        master_port("none")


def test_cuda_device_index_one_task_per_gpu():
    assert cuda_device_index(local_rank=3, local_world_size=8, visible_devices=8) == 3
    assert cuda_device_index(local_rank=3, local_world_size=8, visible_devices=1) == 0  # --gpu-bind
    with pytest.raises(RuntimeError, match="one task per GPU"):
        cuda_device_index(local_rank=3, local_world_size=8, visible_devices=4)


def test_dry_run_prints_the_sbatch_script_of_an_eight_node_job(tmp_path):
    out_dir = tmp_path / "run"
    out = subprocess.run(
        [sys.executable, str(SUBMIT), "--entry", "check", "--nodes", "8", "--gpus-per-node", "8",
         "--cpus-per-task", "12", "--mem", "0", "--partition", "gpu", "--account", "vlp", "--qos", "high",
         "--constraint", "h100", "--time", "2-00:00:00", "--job-name", "egovlpv2-base", "--output-dir", str(out_dir),
         "--dry-run"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for expected in [
        "#SBATCH --nodes=8", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8", "#SBATCH --cpus-per-task=12",
        "#SBATCH --mem=0", "#SBATCH --partition=gpu", "#SBATCH --account=vlp", "#SBATCH --qos=high",
        "#SBATCH --constraint=h100", "#SBATCH --time=2880", "#SBATCH --job-name=egovlpv2-base",
        "#SBATCH --signal=USR2@120", "#SBATCH --requeue", "#SBATCH --open-mode=append",
        f"#SBATCH --output={out_dir}/slurm/%j/%j_0_log.out",
        "export SUBMITIT_EXECUTOR=slurm",
    ]:
        assert expected in lines, f"{expected!r} missing from:\n{out.stdout}"
    srun = [line for line in lines if line.startswith("srun ")]
    assert len(srun) == 1 and "-m submitit.core._submit" in srun[0] and f"{out_dir}/slurm/%j/%j_%t_log.out" in srun[0]
    cd = [shlex.split(line)[1] for line in lines if line.startswith("cd ")]
    assert len(cd) == 1 and cd[0].startswith(f"{out_dir}/code/"), "jobs must start in the code snapshot"
    assert "64 tasks" in out.stdout
    assert not out_dir.exists(), "a dry run must not create the run directory"
