"""What every task of a SLURM job derives alike without talking to the others: the rendezvous port
(from the job id) and its CUDA device. ``egovlpv2.dist.env`` builds the distributed environment on them."""
from __future__ import annotations

import os
import re

# MASTER_PORT = PORT_BASE + (job id mod PORT_SPAN): every task of a job computes the same port without
# talking to the others, and two jobs sharing a node rarely collide. The range avoids the ephemeral
# ports Linux hands out (32768-60999) and the usual 29500.
PORT_BASE = 15000
PORT_SPAN = 15000


def master_port(job_id: str) -> int:
    """A port every task of job ``job_id`` agrees on (array jobs "123_4" use both numbers)."""
    digits = re.findall(r"\d+", str(job_id))
    if not digits:
        raise ValueError(f"cannot derive a port from job id {job_id!r}")
    key = int(digits[0]) * 1009 + sum(int(d) for d in digits[1:])
    return PORT_BASE + key % PORT_SPAN


def restart_count() -> int:
    """How often SLURM restarted this job (``SLURM_RESTART_COUNT``: requeues after preemption, a time limit
    or a node failure); 0 outside SLURM or on a first run."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    except ValueError:
        return 0


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

