"""Submission pieces that need no cluster: time limits, cluster shape, dry-run."""
from __future__ import annotations

import os
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
    assert "--kill-on-bad-exit=1" in shlex.split(srun[0]), "a failed task must end the job, not leave its peers waiting"
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
    assert "# every task runs egovlpv2.cluster.entries.finetune(DeepSpeedRun)" in out.stdout
    assert "16 tasks" in out.stdout
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
    boundary (train.stop_timeout_s), the other half for the save. The lowered value is the one submitted."""
    def submitted(*args):
        out = submit_dry("--output-dir", str(tmp_path / "run"), *args, "--config", "demo")
        assert out.returncode == 0, out.stderr
        return out.stdout, yaml.safe_load(out.stdout.split("# resolved config\n", 1)[1])["train"]["stop_timeout_s"]

    printed, timeout = submitted()  # --signal-delay-s 120, the recipe's 300 s
    assert timeout == 60 and "# train.stop_timeout_s=60 (was 300): half of --signal-delay-s 120" in printed
    printed, timeout = submitted("--signal-delay-s", "900")
    assert timeout == 300 and "(was 300)" not in printed


def _eval_inputs(root):
    (root / "data").mkdir()
    (root / "data" / "manifest.json").write_text("{}")
    (root / "tokenizer").mkdir()
    (root / "model.pt").write_bytes(b"")
    return ["--task", "egomcq", "--checkpoint", str(root / "model.pt"), "--data", str(root / "data"),
            "--tokenizer", str(root / "tokenizer"), "--batch-size", "5"]


def _features_inputs(root):
    (root / "a.mp4").write_bytes(b"")  # planning looks at names only
    (root / "model.pt").write_bytes(b"")
    return ["--preset", "egomq", "--checkpoint", str(root / "model.pt"), "--videos", str(root),
            "--out", str(root / "feats"), "--batch-size", "3"]


# entry -> (its arguments, made under a directory; the function and type every task gets; the printed config fits)
DRY_RUNS = {
    "pretrain": (lambda root: ["--deepspeed", "zero3", "--config", "demo", "data.batch_size=3"],
                 "egovlpv2.cluster.entries.pretrain(DeepSpeedRun)",
                 lambda c, root: c["data"]["batch_size"] == 3 and c["deepspeed"]["zero_optimization"]["stage"] == 3),
    "finetune": (lambda root: ["--task", "epic_mir", "optim.lr=2e-5"], "egovlpv2.cluster.entries.finetune(DeepSpeedRun)",
                 lambda c, root: c["task"] == "epic_mir" and c["optim"]["lr"] == 2e-5 and "bf16" in c["deepspeed"]),
    "eval": (_eval_inputs, "egovlpv2.eval.run.evaluate(EvalRun)",
             lambda c, root: c["batch_size"] == 5 and c["checkpoint"] == str(root / "model.pt") and c["report"] is None),
    "features": (_features_inputs, "egovlpv2.cluster.entries.features(ExtractionRequest)",
                 lambda c, root: c["batch_size"] == 3 and c["clips"] == 1 and c["out"] == str(root / "feats")),
    "shards": (lambda root: ["--task", "egoclip", "--csv", "meta.csv", "--videos", "v/", "--out", "s/",
                             "--samples-per-shard", "7", "--staging", "st/"], "egovlpv2.cluster.entries.shards(ShardWriting)",
               lambda c, root: c["run"]["samples_per_shard"] == 7 and c["run"]["encode"]["crf"] == 23 and c["staging"] == "st/"),
    "check": (lambda root: ["--timeout-s", "9"], "egovlpv2.cluster.check.run_check(CheckOptions)",
              lambda c, root: c == {"timeout_s": 9.0}),
}


def test_every_entry_has_its_command_line_parser():
    from egovlpv2.cli.submit import ENTRY_ARGUMENTS
    from egovlpv2.cluster.entries import ENTRIES

    assert set(ENTRY_ARGUMENTS) == set(ENTRIES) == set(DRY_RUNS)


@pytest.mark.parametrize("entry", sorted(DRY_RUNS))
def test_dry_run_prints_the_typed_value_each_entry_gets(submit_dry, tmp_path, entry):
    arguments, runs, fits = DRY_RUNS[entry]
    out = submit_dry("--entry", entry, "--output-dir", str(tmp_path / "run"), *arguments(tmp_path))
    assert out.returncode == 0, out.stderr
    assert f"# every task runs {runs} in {REPO}\n" in out.stdout, out.stdout
    config = yaml.safe_load(out.stdout.split("# resolved config\n", 1)[1])
    assert fits(config, tmp_path), config
    assert not (tmp_path / "run").exists()


def test_the_shards_entry_sets_the_part_of_each_task_itself(submit_dry, tmp_path):
    out = submit_dry("--entry", "shards", "--output-dir", str(tmp_path / "run"), "--videos", "v/", "--out", "s/",
                     "--parts", "4")
    assert out.returncode == 2 and "--entry shards sets --part and --parts itself" in out.stderr


def test_a_job_imports_its_entry_function_from_the_code_snapshot(tmp_path):
    """The entry function travels in the job's pickle by module and name: the job runs the snapshot's copy."""
    import cloudpickle

    from egovlpv2.cluster.check import CheckOptions
    from egovlpv2.cluster.entries import ENTRIES
    from egovlpv2.cluster.job import LaunchedJob
    from egovlpv2.cluster.submission import snapshot_code

    code_dir = snapshot_code(tmp_path / "run")
    job = tmp_path / "job.pkl"
    job.write_bytes(cloudpickle.dumps(LaunchedJob(entry=ENTRIES["check"].run, value=CheckOptions(timeout_s=7.0))))
    probe = ("import pickle, sys; job = pickle.load(open(sys.argv[1], 'rb')); "
             "print(job.entry.__code__.co_filename, job.value.timeout_s)")
    out = subprocess.run([sys.executable, "-c", probe, str(job)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(code_dir)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(code_dir / "egovlpv2" / "cluster" / "check.py"), "7.0"]
