"""torch.distributed environment of a submitit task (SLURM, local or debug executor).

``deepspeed.init_distributed`` and ``torch.distributed.init_process_group(init_method="env://")`` read
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; neither reads SLURM's or submitit's
variables. This module derives those five (plus LOCAL_WORLD_SIZE) from ``submitit.JobEnvironment``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# MASTER_PORT = PORT_BASE + (job id mod PORT_SPAN): every task of a job computes the same port without
# talking to the others, and two jobs sharing a node rarely collide. The range avoids the ephemeral
# ports Linux hands out (32768-60999) and the usual 29500.
PORT_BASE = 15000
PORT_SPAN = 15000


@dataclass(frozen=True)
class TaskEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int

    def as_environ(self) -> dict[str, str]:
        return {
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_RANK": str(self.local_rank),
            "LOCAL_WORLD_SIZE": str(self.local_world_size),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
        }


def master_port(job_id: str) -> int:
    """A port every task of job ``job_id`` agrees on (array jobs "123_4" use both numbers)."""
    digits = re.findall(r"\d+", str(job_id))
    if not digits:
        raise ValueError(f"cannot derive a port from job id {job_id!r}")
    key = int(digits[0]) * 1009 + sum(int(d) for d in digits[1:])
    return PORT_BASE + key % PORT_SPAN


def task_env(job_env) -> TaskEnv:
    """Map a ``submitit.JobEnvironment`` to the torch distributed variables of this task."""
    num_tasks, num_nodes = job_env.num_tasks, job_env.num_nodes
    if num_tasks % num_nodes:
        raise RuntimeError(
            f"{num_tasks} tasks on {num_nodes} nodes: the launcher expects the same number of tasks on "
            "every node (--ntasks-per-node)"
        )
    # A one-node job talks over loopback; otherwise every task dials the first host of the allocation,
    # whose name must resolve on every node.
    addr = "127.0.0.1" if num_nodes == 1 else job_env.hostnames[0]
    return TaskEnv(
        rank=job_env.global_rank,
        world_size=num_tasks,
        local_rank=job_env.local_rank,
        local_world_size=num_tasks // num_nodes,
        master_addr=addr,
        master_port=master_port(job_env.job_id),
    )


def cuda_device_index(local_rank: int, local_world_size: int, visible_devices: int) -> int:
    """The CUDA device of a task: one task per GPU, whether SLURM shows each task all the node's GPUs
    or only its own (``--gpu-bind``, ``--gpus-per-task``)."""
    if visible_devices == local_world_size:
        return local_rank
    if visible_devices == 1:
        return 0
    raise RuntimeError(
        f"{visible_devices} visible CUDA devices for {local_world_size} tasks on this node: run one task "
        "per GPU (--ntasks-per-node equal to --gpus-per-node)"
    )

