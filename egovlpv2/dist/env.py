"""The distributed environment, whatever started the process.

Launchers describe the job differently:
- ``torchrun`` and the ``deepspeed`` launcher export RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT;
- ``srun`` exports SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID / SLURM_JOB_NODELIST, which neither torch nor
  ``deepspeed.init_distributed`` reads;
- submitit exposes the same facts through ``submitit.JobEnvironment``.

:func:`detect` maps each to one :class:`DistEnv`, :func:`init_distributed` exports it as the torch variables
and creates the process group exactly once (also for a single process, so DeepSpeed never falls back to
MPI discovery or a hard-coded port).
"""
from __future__ import annotations

import datetime
import os
import re
import socket
from dataclasses import dataclass
from typing import Mapping, Optional

import torch
import torch.distributed as dist

from egovlpv2.dist.slurm import cuda_device_index, master_port
from egovlpv2.errors import UserError


class PortInUseError(UserError, OSError):
    """The store's port, chosen by the user or derived from the SLURM job id, is taken on the first node."""


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int
    source: str  # "torch" (torchrun / deepspeed launcher), "slurm", "submitit" or "single"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def expand_hostlist(hostlist: str) -> list[str]:
    """Expand a SLURM node list such as ``gpu[001-003,7],login1`` into host names."""
    hosts: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", hostlist):
        match = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if not match:
            hosts.append(part)
            continue
        prefix, ranges, suffix = match.groups()
        for item in ranges.split(","):
            lo, _, hi = item.partition("-")
            if not hi:
                hosts.append(f"{prefix}{lo}{suffix}")
                continue
            for number in range(int(lo), int(hi) + 1):
                hosts.append(f"{prefix}{number:0{len(lo)}d}{suffix}")
    return hosts


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _from_torch_vars(env: Mapping[str, str]) -> DistEnv:
    world = int(env["WORLD_SIZE"])
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in env and world > 1]
    if missing:
        raise RuntimeError(f"RANK/WORLD_SIZE are set but {missing} are not: the launcher did not export them")
    return DistEnv(
        rank=int(env["RANK"]),
        world_size=world,
        local_rank=int(env.get("LOCAL_RANK", 0)),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", world)),
        master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
        master_port=int(env.get("MASTER_PORT", 0)) or free_port(),
        source="torch",
    )


def _from_slurm(env: Mapping[str, str]) -> DistEnv:
    nodelist = env.get("SLURM_STEP_NODELIST") or env["SLURM_JOB_NODELIST"]
    world = int(env["SLURM_NTASKS"])
    nodes = int(env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    return DistEnv(
        rank=int(env["SLURM_PROCID"]),
        world_size=world,
        local_rank=int(env.get("SLURM_LOCALID", 0)),
        local_world_size=max(1, world // max(1, nodes)),
        master_addr=env.get("MASTER_ADDR") or expand_hostlist(nodelist)[0],
        master_port=int(env.get("MASTER_PORT") or master_port(env.get("SLURM_JOB_ID", "0"))),
        source="slurm",
    )


def from_job_environment(job_env) -> DistEnv:
    """Map a ``submitit.JobEnvironment`` to this task's environment."""
    num_tasks, num_nodes = job_env.num_tasks, job_env.num_nodes
    if num_tasks % num_nodes:
        raise RuntimeError(
            f"{num_tasks} tasks on {num_nodes} nodes: the launcher expects the same number of tasks on "
            "every node (--ntasks-per-node)"
        )
    # A one-node job talks over loopback; otherwise every task dials the first host of the allocation,
    # whose name must resolve on every node.
    addr = "127.0.0.1" if num_nodes == 1 else job_env.hostnames[0]
    return DistEnv(job_env.global_rank, num_tasks, job_env.local_rank, num_tasks // num_nodes, addr,
                   master_port(job_env.job_id), "submitit")


def _from_submitit(env: Mapping[str, str]) -> DistEnv:
    import submitit

    return from_job_environment(submitit.JobEnvironment())


def detect(environ: Optional[Mapping[str, str]] = None) -> DistEnv:
    """Read the launcher's variables; explicit torch variables win, then submitit, then an ``srun`` step."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return _from_torch_vars(env)
    if env.get("SUBMITIT_EXECUTOR"):
        return _from_submitit(env)
    # SLURM_STEP_ID marks a task started by srun; a shell inside salloc/sbatch alone is a single process.
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and "SLURM_STEP_ID" in env:
        return _from_slurm(env)
    return DistEnv(0, 1, 0, 1, "127.0.0.1", int(env.get("MASTER_PORT", 0)) or free_port(), "single")


def export(env: DistEnv) -> None:
    """Write ``env`` as the variables torch's ``env://`` rendezvous and DeepSpeed read."""
    os.environ.update(
        RANK=str(env.rank),
        WORLD_SIZE=str(env.world_size),
        LOCAL_RANK=str(env.local_rank),
        LOCAL_WORLD_SIZE=str(env.local_world_size),
        MASTER_ADDR=env.master_addr,
        MASTER_PORT=str(env.master_port),
    )


def select_device(env: DistEnv) -> torch.device:
    """``cuda:<local_rank>`` when CUDA is usable (and made current), else the CPU."""
    if torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR", "cuda") != "cpu":
        index = cuda_device_index(env.local_rank, env.local_world_size, torch.cuda.device_count())
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def init_distributed(environ: Optional[Mapping[str, str]] = None, timeout_s: float = 600.0) -> DistEnv:
    """Detect, export and initialise the process group (NCCL on CUDA, gloo on CPU) once per process.

    ``timeout_s`` bounds every collective (pre-training takes it from ``train.collective_timeout_s``);
    dead or hung peers are found sooner by :mod:`egovlpv2.dist.watchdog`.

    Calling it again returns the environment of the existing group.
    """
    if dist.is_available() and dist.is_initialized():
        return detect(environ)
    env = detect(environ)
    export(env)
    device = select_device(env)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            rank=env.rank,
            world_size=env.world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    except dist.DistNetworkError as exc:
        if env.rank == 0 and "EADDRINUSE" in str(exc):
            raise PortInUseError(f"MASTER_PORT {env.master_port} is taken on {socket.gethostname()}: "
                                 "export another MASTER_PORT for every task") from exc
        raise
    return env


def current_device() -> torch.device:
    return select_device(detect())
