"""Start ranks the way ``srun`` does: one process per rank, RANK/WORLD_SIZE/MASTER_* in the environment and no
elastic agent to tear the job down, all in one process group (what SLURM and launchers signal as a whole)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from egovlpv2.dist.env import free_port
from tests.helpers import REPO, liveness

ZERO2 = "zero2"  # the shipped DeepSpeed config


@dataclass
class Job:
    procs: list
    logs: list

    @property
    def pgid(self) -> int:
        return self.procs[0].pid

    def signal_group(self, signum: int) -> None:
        """``kill -SIG -- -PGID``: every rank and every loader worker at once."""
        subprocess.run(["kill", f"-{signal.Signals(signum).name[3:]}", "--", f"-{self.pgid}"], check=True)

    def wait(self, timeout: float) -> list[int]:
        """Exit codes; fails the test if a rank is still running after ``liveness(timeout)`` seconds."""
        timeout = liveness(timeout)
        deadline = time.monotonic() + timeout
        codes = []
        for rank, proc in enumerate(self.procs):
            try:
                codes.append(proc.wait(timeout=max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"rank {rank} still running after {timeout:.0f} s\n{self.output()}")
        return codes

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def output(self, rank: int | None = None) -> str:
        logs = self.logs if rank is None else [self.logs[rank]]
        return "\n".join(Path(p).read_text(errors="replace")[-6000:] for p in logs)


def start(script: Path, args: list, log_dir: Path, nproc: int = 2) -> Job:
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    procs, logs = [], []
    for rank in range(nproc):
        env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", RANK=str(rank),
                   WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(nproc),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        log = log_dir / f"rank{rank}_{time.monotonic_ns()}.log"
        with open(log, "w") as f:
            procs.append(subprocess.Popen([sys.executable, str(script), *map(str, args)], cwd=REPO, env=env,
                                          stdout=f, stderr=subprocess.STDOUT,
                                          process_group=0 if rank == 0 else procs[0].pid))
        logs.append(log)
    return Job(procs, logs)


def run(script: Path, args: list, log_dir: Path, timeout: float = 240, expect_failure: bool = False) -> Job:
    job = start(script, args, log_dir)
    codes = job.wait(timeout)
    if expect_failure:
        assert any(codes), f"the run was expected to fail\n{job.output()}"
    elif any(codes):
        pytest.fail(f"exit codes {codes}\n{job.output()}")
    return job


def wait_for(path: Path, timeout: float = 120) -> None:
    """Return once ``path`` exists; fail the test after ``liveness(timeout)`` seconds."""
    timeout = liveness(timeout)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.1)


def results(run_dir: Path, rank: int) -> list[dict]:
    files = sorted(run_dir.glob(f"result_rank{rank}_*.json"), key=lambda p: p.stat().st_mtime)
    return [json.loads(p.read_text()) for p in files]


def losses(history: list[dict]) -> list[tuple]:
    return [(h["step"], h["loss"], h["mse"], h["grad_norm"]) for h in history]
