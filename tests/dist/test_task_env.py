"""submitit's JobEnvironment -> the torch distributed environment (egovlpv2/dist/env.py, egovlpv2/dist/slurm.py)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from egovlpv2.dist.env import DistEnv, from_job_environment
from egovlpv2.dist.slurm import PORT_BASE, PORT_SPAN, cuda_device_index, master_port


def _job_env(**kw):
    base = dict(job_id="4242", num_tasks=16, num_nodes=2, global_rank=9, local_rank=1, hostnames=["gpu017", "gpu018"])
    return SimpleNamespace(**{**base, **kw})


def test_task_env_maps_submitit_to_torch_variables():
    env = from_job_environment(_job_env())
    assert env == DistEnv(rank=9, world_size=16, local_rank=1, local_world_size=8, master_addr="gpu017",
                          master_port=master_port("4242"), source="submitit")
    # every task of the job derives the same port; a one-node job stays on loopback
    assert from_job_environment(_job_env(global_rank=0, local_rank=0)).master_port == env.master_port
    assert from_job_environment(_job_env(num_tasks=8, num_nodes=1)).master_addr == "127.0.0.1"
    with pytest.raises(RuntimeError, match="same number of tasks"):
        from_job_environment(_job_env(num_tasks=15))


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
