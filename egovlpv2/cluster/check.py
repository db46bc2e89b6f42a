"""A cluster check before a long run: every task joins the process group and an all-reduce is verified.

``egovlpv2-submit --entry check --nodes 2`` catches the usual multi-node failures in seconds
(node names that do not resolve, a blocked MASTER_PORT, tasks that disagree on the world size, GPUs
not visible) instead of as a hang in the first step of pre-training.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class CheckOptions:
    timeout_s: float = 300.0  # give up joining the group after this long


def run_check(options: CheckOptions) -> dict:
    """Every task of a check job: join the group, verify an all-reduce, report where each task ran."""
    from egovlpv2.dist.env import current_device, init_distributed

    env = init_distributed(timeout_s=options.timeout_s)
    try:
        device = current_device()
        value = torch.tensor([float(env.rank + 1)], device=device)
        dist.all_reduce(value)
        expected = env.world_size * (env.world_size + 1) / 2
        if value.item() != expected:
            raise RuntimeError(f"all-reduce gave {value.item()}, expected {expected}")
        hosts: list = [None] * env.world_size
        node = os.environ.get("SLURMD_NODENAME", socket.gethostname())
        dist.all_gather_object(hosts, (env.rank, node, str(device)))
    finally:
        dist.destroy_process_group()
    import egovlpv2

    code = str(Path(egovlpv2.__file__).resolve().parents[1])  # the run's code snapshot under submit.py
    report = {"world_size": env.world_size, "all_reduce": value.item(), "tasks": hosts, "rank": env.rank, "code": code}
    print(f"check passed: {env.world_size} tasks, all-reduce {value.item():g}; tasks {hosts}; code {code}", flush=True)
    return report
