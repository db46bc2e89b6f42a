"""Put a launch entry point on a cluster with submitit: sbatch parameters, code snapshot, submission.

Layout of a run directory ``<output_dir>``:
- ``code/<stamp>/egovlpv2/``: the package that submitted, as installed (a checkout or site-packages), with
  the recipes and DeepSpeed configs it ships; the jobs of one submission, requeued ones included, import
  from there, so editing or reinstalling the package does not change them.
- ``slurm/<jobid>/``: submitit's files of one job: ``<jobid>_submission.sh``, ``<jobid>_<task>_log.out|err``, pickles.
- everything the entry point writes (checkpoints, ``latest``, TensorBoard logs, resolved config).
"""
from __future__ import annotations

import contextlib
import io
import math
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import egovlpv2
from egovlpv2.cluster.job import LaunchedJob
from egovlpv2.errors import UsageError

PACKAGE_DIR = Path(egovlpv2.__file__).resolve().parent


@dataclass
class ClusterSpec:
    nodes: int = 1
    gpus_per_node: int = 8
    tasks_per_node: int | None = None  # default: one task per GPU, or one task on a CPU node
    cpus_per_task: int | None = None
    mem: str | None = None  # SLURM syntax: "400G", "64000M", "0" (all of the node's memory)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time: str = "24:00:00"
    job_name: str = "egovlpv2"
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit: one step + a checkpoint must fit
    max_timeouts: int = 20  # requeues after hitting the time limit (preemptions are not counted)

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise UsageError(f"--nodes must be at least 1, got {self.nodes}")
        if self.gpus_per_node < 0:
            raise UsageError(f"--gpus-per-node must be >= 0, got {self.gpus_per_node}")
        if self.tasks_per_node is None:
            self.tasks_per_node = max(self.gpus_per_node, 1)
        if self.gpus_per_node and self.tasks_per_node != self.gpus_per_node:
            raise UsageError(
                f"{self.tasks_per_node} tasks for {self.gpus_per_node} GPUs per node: training runs one task per GPU"
            )
        if self.mem is not None and not re.fullmatch(r"\d+[KMGT]?", self.mem):
            raise UsageError(f"--mem {self.mem!r}: use SLURM's syntax, e.g. 400G, 64000M or 0 (whole node)")
        self.time_minutes = time_to_minutes(self.time)
        if self.signal_delay_s >= self.time_minutes * 60:
            raise UsageError(f"--signal-delay-s {self.signal_delay_s} is not shorter than --time {self.time}")

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks_per_node


def time_to_minutes(text: str) -> int:
    """SLURM time syntax ("MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS") -> whole minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise UsageError(f"--time {text!r} is not a SLURM time (MM, HH:MM:SS or D-HH:MM:SS)")
    days, a, b, c = match.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:  # MM:SS
        seconds = int(a) * 60 + int(b)
    else:  # MM
        seconds = int(a) * 60
    if seconds <= 0:
        raise UsageError(f"--time {text!r} must be positive")
    return math.ceil(seconds / 60)


def submitit_folder(output_dir: Path) -> Path:
    """submitit's folder for the jobs of a run: one sub-folder per job id."""
    return Path(output_dir).absolute() / "slurm" / "%j"


def slurm_parameters(spec: ClusterSpec, code_dir: Path) -> dict:
    """submitit ``SlurmExecutor.update_parameters`` arguments for ``spec``, jobs starting in ``code_dir``."""
    code = shlex.quote(str(code_dir))
    params: dict = {
        "job_name": spec.job_name,
        "nodes": spec.nodes,
        "ntasks_per_node": spec.tasks_per_node,
        "time": spec.time_minutes,
        "signal_delay_s": spec.signal_delay_s,
        # the snapshot comes first on sys.path (python -m puts the working directory there)
        "setup": [f"cd {code}", f'export PYTHONPATH={code}"${{PYTHONPATH:+:$PYTHONPATH}}"'],
        # requeueing must be allowed even where the cluster's default (JobRequeue) forbids it
        "additional_parameters": {"requeue": True},
        # a task that fails ends the step: its peers would otherwise wait in the rendezvous or a
        # collective until the time limit
        "srun_args": ["--kill-on-bad-exit=1"],
    }
    if spec.gpus_per_node:
        params["gpus_per_node"] = spec.gpus_per_node
    if spec.mem is not None:
        params["additional_parameters"]["mem"] = spec.mem
    for name in ("cpus_per_task", "partition", "account", "qos", "constraint"):
        value = getattr(spec, name)
        if value is not None:
            params[name] = value
    return params


def sbatch_script(spec: ClusterSpec, output_dir: Path, code_dir: Path | None = None) -> str:
    """The sbatch script a submission of ``spec`` would write (no SLURM needed)."""
    from submitit.slurm.slurm import _make_sbatch_string

    output_dir = Path(output_dir).absolute()
    code_dir = code_dir or output_dir / "code" / "<stamp>"
    folder = submitit_folder(output_dir)
    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    return _make_sbatch_string(command=command, folder=folder, **slurm_parameters(spec, code_dir))


def snapshot_code(output_dir: Path) -> Path:
    """Copy the imported package into ``<output_dir>/code/<stamp>/egovlpv2`` and return ``code/<stamp>``."""
    code_dir = Path(output_dir).absolute() / "code" / time.strftime("%Y%m%d-%H%M%S")
    while code_dir.exists():  # two submissions within a second
        code_dir = code_dir.with_name(code_dir.name + "-1")
    shutil.copytree(PACKAGE_DIR, code_dir / PACKAGE_DIR.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return code_dir


def make_executor(cluster: str, spec: ClusterSpec, output_dir: Path, code_dir: Path):
    """A submitit executor: ``slurm``, ``local`` (tasks as subprocesses of this machine, one node) or
    ``debug`` (in this process, for a debugger; no snapshot)."""
    import submitit

    folder = submitit_folder(output_dir)
    if cluster == "slurm":
        if shutil.which("sbatch") is None:
            raise UsageError("sbatch not found: this machine is not a SLURM login node (use --cluster local)")
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=spec.max_timeouts)
        executor.update_parameters(**slurm_parameters(spec, code_dir))
        return executor
    if spec.nodes != 1:
        raise UsageError(f"--cluster {cluster} runs on this machine only: use --nodes 1, not {spec.nodes}")
    if cluster == "local":
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=spec.max_timeouts)
        executor.update_parameters(
            timeout_min=spec.time_minutes,
            tasks_per_node=spec.tasks_per_node,
            gpus_per_node=spec.gpus_per_node,
            signal_delay_s=spec.signal_delay_s,
            setup=slurm_parameters(spec, code_dir)["setup"],
        )
        return executor
    if cluster == "debug":
        if spec.tasks_per_node != 1:
            raise UsageError("--cluster debug runs one task in this process: use --gpus-per-node 0 or 1")
        return submitit.DebugExecutor(folder=folder)
    raise UsageError(f"unknown cluster {cluster!r}: slurm, local or debug")


@dataclass
class Submitted:
    job: object
    output_dir: Path
    code_dir: Path | None

    def describe(self) -> str:
        job = self.job
        lines = [f"job {job.job_id} submitted; run directory {self.output_dir}"]
        if self.code_dir is not None:
            lines.append(f"  code snapshot: {self.code_dir}")
        paths = getattr(job, "paths", None) if type(job).__name__ != "DebugJob" else None  # debug: this terminal
        if paths is not None:
            lines.append(f"  logs (rank 0): {paths.stdout}  {paths.stderr}")
        if type(job).__name__ == "SlurmJob":
            lines.append(f"  status: sacct -j {job.job_id} -X -o JobID,JobName%20,State,Elapsed,NodeList  (squeue -j {job.job_id})")
        elif paths is not None:
            lines.append(f"  status: tail -f {paths.stdout}")
        return "\n".join(lines)


def submit(entry: Callable[[Any], Any], value: Any, spec: ClusterSpec, output_dir: Path,
           cluster: str = "slurm") -> Submitted:
    """Snapshot the code and submit ``entry(value)`` on ``spec``; returns the submitit job."""
    output_dir = Path(output_dir).absolute()
    output_dir.mkdir(parents=True, exist_ok=True)
    code_dir = snapshot_code(output_dir) if cluster != "debug" else None
    executor = make_executor(cluster, spec, output_dir, code_dir or PACKAGE_DIR.parent)
    job = _submit_to(executor, LaunchedJob(entry=entry, value=value, workdir=str(Path.cwd())))
    return Submitted(job=job, output_dir=output_dir, code_dir=code_dir)


def _submit_to(executor, launched: LaunchedJob):
    """``executor.submit``; a submission that sbatch rejects (a gres, partition or account the cluster does not
    have) is the user's to fix: a UsageError with sbatch's own message, which submitit would also print raw."""
    from submitit.core.utils import FailedJobError

    captured = io.StringIO()
    rejected = None
    try:
        with contextlib.redirect_stderr(captured):
            return executor.submit(launched)
    except FailedJobError as exc:
        rejected = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or "no message"
    finally:
        if rejected is None:  # anything said on the way is kept
            sys.stderr.write(captured.getvalue())
    raise UsageError(f"sbatch rejected the job: {rejected}")
