"""One job per run directory: an ownership record kept alive by an expiring lease.

``<output_dir>/owner.json`` names the job that may write the run directory: host, pid, SLURM job id and
restart count, start time, a random token, and a renewal counter that a thread of rank 0 bumps every
``lease_s / 6``. A lease rather than ``flock``: on NFS (v3 without a working lock manager, or with
``nolock``) and on Lustre mounted without ``-o flock``, ``flock`` is a no-op or an error, and a lock held
by a dead node is only released once the server notices. The record needs only what every shared
filesystem gives: an atomic ``link`` (create-if-absent) and ``rename`` (replace), and close-to-open
consistency (opening the file reads the latest renewal).

A job that finds the record held decides whether the holder is dead:

- the holder is on this host and its process is gone (or its pid now names another process);
- the holder is this job's previous run: the same SLURM job id, requeued (``SLURM_RESTART_COUNT`` higher);
- the holder is on another host and its renewal counter does not move for ``lease_s`` (a killed job, a dead
  node). The newcomer watches it on its own clock, so the hosts' clocks need not agree; a renewal older than
  ``2 * lease_s`` by this host's clock is taken as expired at once.

A dead holder is taken over without any manual step; a live one makes the newcomer stop with a
:class:`RunDirectoryBusy` error naming it. The holder checks its token before every checkpoint commit, so
a job that lost its lease (stalled past ``lease_s``) never moves ``latest``.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from egovlpv2.dist import collectives as C
from egovlpv2.dist.slurm import restart_count
from egovlpv2.errors import UserError
from egovlpv2.fileio import fsync_dir

log = logging.getLogger(__name__)

OWNER_FILE = "owner.json"
LEASE_S = 60.0


class RunDirectoryBusy(UserError):
    """Another live job owns the run directory."""


class LeaseLost(RuntimeError):
    """This job no longer owns its run directory (another job took it over)."""


def _process_start(pid: int) -> Optional[str]:
    """The kernel's start time of ``pid`` (clock ticks since boot), which tells a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def _process_alive(pid: int, start: Optional[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    return start is None or _process_start(pid) in (None, start)


@dataclass
class Holder:
    host: str
    pid: int
    slurm_job_id: Optional[str]
    slurm_restart_count: int
    started: str  # UTC, for people
    token: str
    process_start: Optional[str] = None
    lease_s: float = LEASE_S
    renewals: int = 0
    renewed_at: float = 0.0  # the holder's wall clock, epoch seconds

    @classmethod
    def this_process(cls, lease_s: float) -> "Holder":
        return cls(host=socket.gethostname(), pid=os.getpid(), slurm_job_id=os.environ.get("SLURM_JOB_ID"),
                   slurm_restart_count=restart_count(),
                   started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), token=secrets.token_hex(8),
                   process_start=_process_start(os.getpid()), lease_s=lease_s, renewed_at=time.time())

    def describe(self) -> str:
        job = f"SLURM job {self.slurm_job_id}" if self.slurm_job_id else "no SLURM job"
        return f"host {self.host}, pid {self.pid}, {job}, started {self.started}"


def _read(path: Path) -> Optional[Holder]:
    try:
        return Holder(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):  # not a record of ours: nobody holds the directory through it
        return Holder(host="?", pid=-1, slurm_job_id=None, slurm_restart_count=0, started="?", token="unreadable")


def _write_new(path: Path, holder: Holder) -> bool:
    """Create ``path`` holding ``holder`` if it does not exist (link is atomic on NFS too); False if it does."""
    tmp = path.with_name(f".{path.name}.{holder.token}.tmp")
    tmp.write_text(json.dumps(asdict(holder)))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)


def _dead_at_once(holder: Holder, me: Holder) -> Optional[str]:
    """Why ``holder`` is certainly gone, from what this host can see now; None when it cannot tell."""
    if holder.token == "unreadable":
        return f"{OWNER_FILE} is not an ownership record"
    if holder.host == me.host and (holder.pid == me.pid or not _process_alive(holder.pid, holder.process_start)):
        return f"process {holder.pid} on {holder.host} is gone"
    if holder.slurm_job_id and holder.slurm_job_id == me.slurm_job_id \
            and me.slurm_restart_count > holder.slurm_restart_count:
        return f"SLURM job {holder.slurm_job_id} was requeued (restart {me.slurm_restart_count})"
    if holder.host != me.host and time.time() - holder.renewed_at > 2 * holder.lease_s:
        return f"its lease was last renewed {time.time() - holder.renewed_at:.0f} s ago"
    return None


def _expired(path: Path, holder: Holder) -> Optional[str]:
    """Watch another host's holder for up to its lease: None if it renews (alive), else why it is dead."""
    began = time.monotonic()
    while time.monotonic() - began < holder.lease_s:
        time.sleep(min(1.0, holder.lease_s / 20))
        now = _read(path)
        if now is None or now.token != holder.token or now.renewals != holder.renewals:
            return None if now is not None else "it released the directory"
    return f"no renewal of its lease for {holder.lease_s:.0f} s"


class RunOwnership:
    """This job's hold on a run directory (rank 0): renewed by a daemon thread until :meth:`release`."""

    def __init__(self, path: Path, holder: Holder):
        self.path, self.holder = path, holder
        self._done = threading.Event()
        self._lost: Optional[str] = None
        self._thread = threading.Thread(target=self._renew_forever, name="egovlpv2-run-lease", daemon=True)
        self._thread.start()

    def _renew_forever(self) -> None:
        while not self._done.wait(self.holder.lease_s / 6):
            try:
                self._renew()
            except OSError as exc:  # a filesystem hiccup: the next renewal may succeed
                log.warning("could not renew the lease on %s: %s", self.path, exc)

    def _renew(self) -> None:
        current = _read(self.path)
        if current is None or current.token != self.holder.token:
            self._lost = current.describe() if current is not None else "nobody (the record was removed)"
            log.error("this job lost its run directory %s to %s", self.path.parent, self._lost)
            self._done.set()
            return
        self.holder.renewals += 1
        self.holder.renewed_at = time.time()
        tmp = self.path.with_name(f".{self.path.name}.{self.holder.token}.tmp")
        tmp.write_text(json.dumps(asdict(self.holder)))
        os.replace(tmp, self.path)

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless the record still holds this job's token."""
        current = _read(self.path)
        if self._lost or current is None or current.token != self.holder.token:
            who = self._lost or (current.describe() if current is not None else "nobody")
            raise LeaseLost(f"{self.path.parent} is no longer owned by this job (now: {who}); not committing")

    def release(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        current = _read(self.path)
        if current is not None and current.token == self.holder.token:
            self.path.unlink(missing_ok=True)


def claim(run_dir: str | Path, lease_s: float = LEASE_S) -> RunOwnership:
    """Own ``run_dir`` (created if needed), taking it over from a dead holder; :class:`RunDirectoryBusy`
    if a live job holds it."""
    path = Path(run_dir) / OWNER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    me = Holder.this_process(lease_s)
    while not _write_new(path, me):
        holder = _read(path)
        if holder is None:
            continue  # released meanwhile
        why = _dead_at_once(holder, me)
        if why is None and holder.host != me.host:  # on this host a live process is a live holder
            why = _expired(path, holder)
        if why is None:
            stop = f"scancel {holder.slurm_job_id}" if holder.slurm_job_id else f"kill {holder.pid} on {holder.host}"
            raise RunDirectoryBusy(
                f"{path.parent} is in use by another job ({holder.describe()}): wait for it to end, or stop it "
                f"({stop}) and rerun, or use another train.output_dir. A holder that died is taken over "
                f"automatically (at once on its own host or on a requeue, else once its {holder.lease_s:.0f} s lease "
                "expires)")
        _take_over(path, holder, why)
    return RunOwnership(path, me)


def claim_for_job(run_dir: str | Path, lease_s: float = LEASE_S) -> Optional[RunOwnership]:
    """Collective: rank 0 claims ``run_dir`` for the whole job (other ranks get None); on every rank, the same
    :class:`RunDirectoryBusy` when another live job holds it."""
    ownership, refusal = None, None
    if C.rank() == 0:
        try:
            ownership = claim(run_dir, lease_s)
        except RunDirectoryBusy as exc:
            refusal = str(exc)
    refusal = C.gather_objects(refusal)[0]
    if refusal is not None:
        raise RunDirectoryBusy(refusal)
    return ownership


def _take_over(path: Path, holder: Holder, why: str) -> None:
    """Move a dead holder's record aside; if another newcomer replaced it meanwhile, put theirs back."""
    aside = path.with_name(f".{path.name}.{holder.token}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    moved = _read(aside)
    if moved is not None and moved.token != holder.token:
        try:
            os.link(aside, path)  # someone else's fresh claim: theirs stands, ours is decided again
        except FileExistsError:
            pass
    else:
        log.warning("taking over %s from a job that is gone (%s): %s", path.parent, holder.describe(), why)
    aside.unlink(missing_ok=True)
