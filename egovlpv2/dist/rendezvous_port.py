"""The rendezvous port of a submitit job, agreed through the job's folder.

Every task derives the same first choice from the job id (:func:`egovlpv2.dist.slurm.master_port`), but
on the first node that port may be taken: by another program, or by an outgoing connection where the
node's ephemeral range (``net.ipv4.ip_local_port_range``) reaches into it. A taken port made the store
fail on task 0 while the other tasks waited for it until the time limit. So task 0, which hosts the
store, checks the port, falls back to one the kernel picks, and writes the port it chose into the job's
submitit folder, which every node already shares; the other tasks read it there. Each run of a job
(``SLURM_RESTART_COUNT`` counts requeues) has its own file.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import time
from dataclasses import replace
from pathlib import Path

from egovlpv2.dist.env import DistEnv

log = logging.getLogger(__name__)

# Task 0 may start well after the others on a busy cluster, and NFS may show a new file late.
READ_TIMEOUT_S = 900.0
POLL_S = 0.2


def port_file(folder: Path, job_id: str, attempt: int) -> Path:
    return Path(folder) / f"{job_id}_{attempt}.port"


def listenable(port: int) -> bool:
    """Whether a server can listen on ``port`` on every IPv4 address, as the job's store does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the store: TIME_WAIT does not count
        try:
            sock.bind(("", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
        return True


def choose_port(preferred: int) -> int:
    """``preferred`` if the store can listen on it here, else a free port the kernel picks."""
    if listenable(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        chosen = sock.getsockname()[1]
    log.warning("port %d is taken on %s: the job's store listens on port %d instead", preferred,
                socket.gethostname(), chosen)
    return chosen


def publish_port(path: Path, port: int) -> None:
    """Write ``port`` to ``path`` whole (a reader never sees half a file)."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(f"{port}\n")
    os.replace(partial, path)


def read_port(path: Path, timeout_s: float = READ_TIMEOUT_S) -> int:
    """The port task 0 published at ``path``, waiting for it up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return int(path.read_text())
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"task 0 did not publish the job's rendezvous port ({path}) within "
                                   f"{timeout_s:.0f} s: see its log in {path.parent}") from None
        time.sleep(POLL_S)


def agree_on_port(env: DistEnv, folder: Path, job_id: str, attempt: int,
                  timeout_s: float = READ_TIMEOUT_S) -> DistEnv:
    """``env`` with the port every task of run ``attempt`` of job ``job_id`` will rendezvous on."""
    path = port_file(folder, job_id, attempt)
    if env.rank == 0:
        port = choose_port(env.master_port)
        publish_port(path, port)
    else:
        port = read_port(path, timeout_s)
    return replace(env, master_port=port)
