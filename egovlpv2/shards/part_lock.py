"""One writer at a time for a part of a shard run, and for the plan record that all parts share.

The locks are ``flock`` locks on files under ``records/``: the kernel releases them when the holder exits,
however it exits, so a killed writer never leaves a stale lock behind, and a rerun takes over at once. On
NFS (v4, or v3 with the lock manager) Linux maps ``flock`` onto the server's byte-range locks, which other
clients see; on Lustre the client must be mounted with ``-o flock``. The holder writes who it is into the
lock file, so a second writer can be told whom it is waiting for.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from egovlpv2.errors import UserError


def _holder() -> str:
    job = os.environ.get("SLURM_JOB_ID")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    return f"pid {os.getpid()} on {socket.gethostname()}" + (f" (SLURM job {job})" if job else "") + f", since {since} UTC"


@contextmanager
def exclusive(path: str | Path, what: str) -> Iterator[None]:
    """Hold the lock file ``path`` for the block, or raise UserError naming ``what`` and the current holder."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process (starting up)"
            raise UserError(f"{what} is being written by {holder}; wait for it to finish or stop it "
                            f"(its lock {path} is released when it exits)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (_holder() + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)


@contextmanager
def waiting(path: str | Path) -> Iterator[None]:
    """Hold the lock file ``path`` for a short block, waiting while another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
