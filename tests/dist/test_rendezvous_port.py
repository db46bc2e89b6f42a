"""The job's rendezvous port when the derived one is taken (egovlpv2/dist/rendezvous_port.py, dist/env.py)."""
from __future__ import annotations

import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from egovlpv2.dist.env import DistEnv, free_port
from egovlpv2.dist.rendezvous_port import agree_on_port, listenable, port_file, read_port
from tests.helpers import REPO, liveness


@contextmanager
def held_port():
    """A port another program listens on, on every address."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _task(rank: int, world: int, preferred: int, folder: str, delay_s: float, out) -> None:
    import torch
    import torch.distributed as dist

    time.sleep(delay_s)
    env = agree_on_port(DistEnv(rank, world, rank, world, "127.0.0.1", preferred, "submitit"), Path(folder), "77", 0)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{env.master_port}", rank=rank, world_size=world)
    value = torch.tensor([rank + 1.0])
    dist.all_reduce(value)
    dist.destroy_process_group()
    out.put((rank, env.master_port, value.item()))


def test_a_taken_derived_port_is_replaced_and_every_task_joins_on_the_replacement(tmp_path):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    with held_port() as taken:
        assert not listenable(taken)
        # task 0 starts last: the others wait for what it publishes instead of dialling the taken port
        procs = [ctx.Process(target=_task, args=(rank, 3, taken, str(tmp_path), 2.0 if rank == 0 else 0.0, out))
                 for rank in range(3)]
        for proc in procs:
            proc.start()
        results = sorted(out.get(timeout=liveness(120)) for _ in procs)
        for proc in procs:
            proc.join(timeout=liveness(30))
    ports = {port for _, port, _ in results}
    assert len(ports) == 1 and taken not in ports, results
    assert [value for _, _, value in results] == [6.0, 6.0, 6.0]
    assert port_file(tmp_path, "77", 0).read_text().strip() == str(ports.pop())


def test_a_free_derived_port_is_kept(tmp_path):
    free = free_port()
    env = agree_on_port(DistEnv(0, 2, 0, 1, "h0", free, "submitit"), tmp_path, "5", 3)
    assert env.master_port == free
    assert agree_on_port(DistEnv(1, 2, 0, 1, "h0", free + 1, "submitit"), tmp_path, "5", 3).master_port == free


def test_a_requeued_job_does_not_read_the_port_of_its_previous_run(tmp_path):
    port_file(tmp_path, "5", 0).write_text("12345\n")
    with pytest.raises(TimeoutError, match=r"5_1\.port"):
        read_port(port_file(tmp_path, "5", 1), timeout_s=0.5)


def test_a_taken_master_port_outside_submitit_is_one_error_line(tmp_path):
    script = ("import sys\nfrom egovlpv2.dist.env import init_distributed\nfrom egovlpv2.errors import UserError\n"
              "try:\n    init_distributed()\nexcept UserError as exc:\n    print(f'error: {exc}'); sys.exit(2)\n")
    with held_port() as taken:
        env = dict(os.environ, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(taken), DS_ACCELERATOR="cpu")
        out = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
                             timeout=liveness(120))
    assert out.returncode == 2, out.stderr
    assert out.stdout.strip() == f"error: MASTER_PORT {taken} is taken on {socket.gethostname()}: " \
                                 "export another MASTER_PORT for every task"
