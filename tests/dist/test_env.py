"""The distributed environment derived from each launcher's variables."""
import pytest

from egovlpv2.dist.env import detect, expand_hostlist
from egovlpv2.dist.slurm import master_port as port_for_job


def test_expand_hostlist_handles_ranges_padding_and_lists():
    assert expand_hostlist("gpu[001-003,7],login1") == ["gpu001", "gpu002", "gpu003", "gpu7", "login1"]
    assert expand_hostlist("node5") == ["node5"]
    assert expand_hostlist("a[09-11]b") == ["a09b", "a10b", "a11b"]


def test_torchrun_variables_win():
    env = detect({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                  "MASTER_ADDR": "h0", "MASTER_PORT": "1234", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"})
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (3, 8, 1, 2)
    assert (env.master_addr, env.master_port, env.source) == ("h0", 1234, "torch")


def test_torchrun_without_master_address_is_an_error():
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        detect({"RANK": "0", "WORLD_SIZE": "2"})


def test_srun_task_maps_slurm_variables():
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0",
             "SLURM_STEP_NODELIST": "gpu[12-15]", "SLURM_JOB_NODELIST": "gpu[12-15]", "SLURM_STEP_NUM_NODES": "4",
             "SLURM_JOB_ID": "777"}
    env = detect(slurm)
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (5, 8, 1, 2)
    assert env.master_addr == "gpu12" and env.source == "slurm"
    assert env.master_port == port_for_job("777")
    # Every task of the job derives the same port; another job gets another one.
    assert detect(dict(slurm, SLURM_PROCID="0")).master_port == env.master_port
    assert port_for_job("778") != port_for_job("777")
    assert 1024 < port_for_job("123456789") < 65536


def test_shell_inside_an_allocation_is_a_single_process():
    env = detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_NODELIST": "n1", "SLURM_JOB_ID": "9"})
    assert (env.rank, env.world_size, env.source) == (0, 1, "single")


def test_submitit_job_environment(monkeypatch):
    # submitit reads these (as in a SLURM job it started); the environment is read through its JobEnvironment.
    variables = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "3", "SLURM_NTASKS": "4",
                 "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_JOB_NUM_NODES": "2",
                 "SLURM_JOB_NODELIST": "cn[3-4]", "SLURM_STEP_NODELIST": "cn[3-4]"}
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    env = detect()
    assert (env.rank, env.world_size, env.local_rank, env.source) == (3, 4, 1, "submitit")
    assert env.master_addr == "cn3" and env.master_port == port_for_job("4242")  # two nodes: the first host
