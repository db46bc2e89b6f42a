"""Submission pieces that need no cluster: time limits, cluster shape, dry-run."""
from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import yaml

from egovlpv2.cluster.submission import ClusterSpec, time_to_minutes
from tests.helpers import REPO, SUBMIT, liveness


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
        capture_output=True, text=True, cwd=REPO, timeout=liveness(120),
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
                          "--config", "egoclip", "train.no_such_key=1"], capture_output=True, text=True, cwd=REPO,
                         timeout=liveness(120))
    assert out.returncode == 2 and "no_such_key" in out.stderr
    assert not (tmp_path / "run").exists()


@pytest.fixture
def submit_dry(capsys, monkeypatch):
    """launch/submit.py --dry-run in this process (the imports of a fresh one cost seconds); relative paths
    resolve in the checkout, as for the subprocess runs."""
    from egovlpv2.cli import run_cli
    from egovlpv2.cli.submit import main

    monkeypatch.chdir(REPO)

    def run(*args: str) -> subprocess.CompletedProcess:
        code = run_cli(main, ["--nodes", "2", "--gpus-per-node", "8", "--dry-run", *args])
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return run


def test_finetune_dry_run_resolves_the_recipe_and_rejects_a_bad_key(submit_dry, tmp_path):
    out_dir = tmp_path / "ft"
    out = submit_dry("--entry", "finetune", "--output-dir", str(out_dir), "--task", "charades_ego", "optim.lr=1e-5")
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout.split("# resolved config\n", 1)[1])
    assert config["task"] == "charades_ego" and config["optim"]["lr"] == 1e-5
    assert config["train"]["output_dir"] == str(out_dir)
    command = [line for line in out.stdout.splitlines() if line.startswith("# egovlpv2.cli.finetune:finetune ")]
    assert len(command) == 1 and command[0].split()[2:4] == ["--task", "charades_ego"]
    assert f"train.output_dir={out_dir}" in command[0] and "16 tasks" in out.stdout
    assert not out_dir.exists()

    bad = submit_dry("--entry", "finetune", "--output-dir", str(out_dir), "--task", "epic_mir", "loss.no_such_key=1")
    assert bad.returncode == 2 and "no_such_key" in bad.stderr
    wrong = submit_dry("--entry", "finetune", "--output-dir", str(out_dir), "--task", "epic_mir", "--config", "charades_ego")
    assert wrong.returncode == 2 and "recipe is for charades_ego" in wrong.stderr


def test_features_dry_run_counts_the_clips_and_missing_inputs_fail_at_once(submit_dry, tmp_path):
    videos, out_dir = tmp_path / "videos", tmp_path / "feats"
    videos.mkdir()
    out_dir.mkdir()
    for name in ("a", "b", "c"):
        (videos / f"{name}.mp4").write_bytes(b"")  # planning looks at names only
    (out_dir / "b.pt").write_bytes(b"")
    (tmp_path / "model.pt").write_bytes(b"")
    args = ["--entry", "features", "--preset", "egomq", "--checkpoint", str(tmp_path / "model.pt"),
            "--videos", str(videos), "--out", str(out_dir)]
    out = submit_dry(*args)
    assert out.returncode == 0, out.stderr
    summary = yaml.safe_load(out.stdout.split("# resolved config\n", 1)[1])
    assert summary["clips"] == 3 and summary["clips_done"] == 1
    assert f"#SBATCH --output={out_dir}/slurm/%j/%j_0_log.out" in out.stdout, "logs go with the features by default"

    for problem, message in (("--videos", "video directory not found"), ("--checkpoint", "not found")):
        changed = list(args)
        changed[changed.index(problem) + 1] = str(tmp_path / "missing")
        failed = submit_dry(*changed)
        assert failed.returncode == 2 and message in failed.stderr, failed.stderr
    for name in ("a", "c"):
        (out_dir / f"{name}.pt").write_bytes(b"")
    done = submit_dry(*args)
    assert done.returncode == 0 and "all 3 clips already have features; nothing to submit" in done.stdout


def test_a_training_jobs_stop_timeout_is_derived_from_the_signal_delay(submit_dry, tmp_path):
    """SLURM's warning comes --signal-delay-s before the time limit: half of it at most to reach a step
    boundary (train.stop_timeout_s), the other half for the save."""
    def submitted(*args):
        out = submit_dry("--output-dir", str(tmp_path / "run"), *args, "--config", "demo")
        assert out.returncode == 0, out.stderr
        (job,) = [line for line in out.stdout.splitlines() if line.startswith("# egovlpv2.cluster.entries:pretrain ")]
        return out.stdout, job, yaml.safe_load(out.stdout.split("# resolved config\n", 1)[1])["train"]["stop_timeout_s"]

    printed, job, timeout = submitted()  # --signal-delay-s 120, the recipe's 300 s
    assert job.endswith(" train.stop_timeout_s=60") and timeout == 60
    assert "# train.stop_timeout_s=60 (was 300): half of --signal-delay-s 120" in printed
    printed, job, timeout = submitted("--signal-delay-s", "900")
    assert "stop_timeout_s" not in job and timeout == 300
