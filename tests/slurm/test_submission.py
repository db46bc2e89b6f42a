"""Submission pieces that need no cluster: time limits, cluster shape, dry-run."""
from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import yaml

from egovlpv2.cluster.submission import ClusterSpec, time_to_minutes
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


def test_dry_run_prints_the_sbatch_script_and_config_of_an_eight_node_job(tmp_path):
    out_dir = tmp_path / "run"
    out = subprocess.run(
        [sys.executable, str(SUBMIT), "--nodes", "8", "--gpus-per-node", "8",
         "--cpus-per-task", "12", "--mem", "0", "--partition", "gpu", "--account", "vlp", "--qos", "high",
         "--constraint", "h100", "--time", "2-00:00:00", "--job-name", "egovlpv2-base", "--output-dir", str(out_dir),
         "--dry-run", "--config", "egoclip", "--deepspeed", "zero2", "data.batch_size=16"],
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
    # the resolved recipe, with the override and the run directory pinned to --output-dir
    config = yaml.safe_load(out.stdout.split("# resolved config\n", 1)[1])
    assert config["data"]["batch_size"] == 16 and config["model"]["name"] == "egovlpv2-base"
    assert config["train"]["output_dir"] == str(out_dir)
    assert not out_dir.exists(), "a dry run must not create the run directory"


def test_bad_recipe_fails_before_anything_is_queued(tmp_path):
    out = subprocess.run([sys.executable, str(SUBMIT), "--nodes", "2", "--output-dir", str(tmp_path / "run"),
                          "--config", "egoclip", "train.no_such_key=1"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "no_such_key" in out.stderr
    assert not (tmp_path / "run").exists()
