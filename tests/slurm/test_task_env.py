"""submitit's JobEnvironment -> the torch distributed variables (egovlpv2/dist/slurm.py)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from egovlpv2.dist.slurm import PORT_BASE, PORT_SPAN, cuda_device_index, master_port, task_env


def _job_env(**kw):
    base = dict(job_id="4242", num_tasks=16, num_nodes=2, global_rank=9, local_rank=1, hostnames=["gpu017", "gpu018"])
    return SimpleNamespace(**{**base, **kw})


def test_task_env_maps_submitit_to_torch_variables():
    env = task_env(_job_env())
    assert env.as_environ() == {
        "RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "8",
        "MASTER_ADDR": "gpu017", "MASTER_PORT": str(master_port("4242")),
    }
    # every task of the job derives the same port; a one-node job stays on loopback
    assert task_env(_job_env(global_rank=0, local_rank=0)).master_port == env.master_port
    assert task_env(_job_env(num_tasks=8, num_nodes=1)).master_addr == "127.0.0.1"
    with pytest.raises(RuntimeError, match="same number of tasks"):
        task_env(_job_env(num_tasks=15))


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
