"""A per-rank watchdog: a dead or hung peer, or a stop that cannot finish, ends the process in bounded time.

Collectives only notice a lost peer at their timeout (NCCL), or not at all when the peer hangs with its
sockets open; under ``srun`` no elastic agent tears the job down either. So every rank runs a thread that
bumps its own counter in the job's TCPStore every ``interval_s`` and watches everyone else's:

- a peer whose counter has not moved for ``peer_timeout_s`` (killed, stopped, its machine gone) or that
  posted a failure is named in an error line, then this process exits with :data:`EXIT_PEER_FAILED`
  (each rank watches the next one in a ring and posts what it finds; every rank reads the posted verdict);
- the store itself unreachable means its host is gone (rank 0 under ``srun``, the agent under torchrun);
- a stop requested while the rank works on a step that does not reach the step boundary within
  ``stop_timeout_s`` (a rank stuck in a collective, its peer hung, a hung loader) exits with
  :data:`EXIT_STOP_TIMEOUT`; the last complete checkpoint stays in charge. Only the way to the boundary is
  bounded (:meth:`PeerWatchdog.in_step`): the evaluation and the save there run as long as they progress
  (a dead peer is still caught by its heartbeat, a collective stuck for good by the collective timeout).

A Python thread cannot beat while the main thread holds the interpreter lock (a long C call that does not
release it), so each rank also forks a small beater process that bumps the same counter for as long as its
rank exists and is not stopped (``SIGSTOP``, a debugger). A rank blocked in C is then alive, not dead; one
stuck in C for good is caught by the collective timeout. Where the beater cannot start, a rank that holds
the lock longer than ``peer_timeout_s`` is declared "dead, hung, or blocked holding the GIL": raise
``train.peer_timeout_s`` above the longest such call.

``os._exit`` is deliberate: the main thread may be blocked inside a collective that no exception reaches.
"""
from __future__ import annotations

import ctypes
import datetime
import gc
import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch.distributed as dist

log = logging.getLogger(__name__)

EXIT_PEER_FAILED = 75
EXIT_STOP_TIMEOUT = 76


def _exit(code: int, message: str) -> None:
    log.error(message)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()  # os._exit skips the interpreter's own flushing
    os._exit(code)


def is_collective_error(exc: BaseException) -> bool:
    """An error raised by a collective or the store (a peer gone), rather than by this rank's own work."""
    return isinstance(exc, dist.DistError) or (isinstance(exc, RuntimeError) and any(
        word in str(exc) for word in ("gloo", "Gloo", "NCCL", "Connection closed", "Connection reset")))


def _stopped_or_gone(pid: int) -> bool:
    """``pid`` is stopped (SIGSTOP, a debugger), a zombie, or gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("T", "t", "Z", "X")


def _beat_for(parent: int, connect: Callable, key: str, interval_s: float) -> None:
    """The beater process: bump ``key`` while ``parent`` exists and is not stopped; die with it."""
    gc.disable()  # objects inherited from the parent are never finalised here
    for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)  # the job's signals are for the rank, not for its beater
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: gone with the rank
    except (OSError, AttributeError):
        pass
    store = connect()
    while os.getppid() == parent:
        if not _stopped_or_gone(parent):
            store.add(key, 1)
        time.sleep(interval_s)


class PeerWatchdog:
    """Heartbeats through the job's TCPStore (MASTER_ADDR:MASTER_PORT), on its own client connection."""

    def __init__(self, rank: int, world_size: int, peer_timeout_s: float, stop_timeout_s: float,
                 stop_requested: Callable[[], bool], interval_s: Optional[float] = None):
        self.rank, self.world_size = rank, world_size
        self.peer_timeout_s, self.stop_timeout_s = peer_timeout_s, stop_timeout_s
        self.stop_requested = stop_requested
        self.interval_s = interval_s or max(0.05, min(1.0, peer_timeout_s / 10))
        # torchrun keeps its store across restarts of the workers: one namespace per attempt.
        self.prefix = f"egovlpv2/watchdog/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
        self._done = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._store = None
        self._beater: Optional[int] = None
        self._step_since: Optional[float] = None  # when the current step began, None between steps

    def _connect(self):
        return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), self.world_size,
                             is_master=False, timeout=datetime.timedelta(seconds=self.peer_timeout_s),
                             wait_for_workers=False)

    def start(self) -> "PeerWatchdog":
        if self.world_size > 1 and {"MASTER_ADDR", "MASTER_PORT"} <= set(os.environ):
            self._store = self._connect()
            self._store.add(f"{self.prefix}beat/{self.rank}", 1)
            self._start_beater()
        elif self.world_size > 1:
            log.warning("MASTER_ADDR/MASTER_PORT are not set: no peer watchdog (only the stop timeout)")
        self._thread = threading.Thread(target=self._run, name="egovlpv2-watchdog", daemon=True)
        self._thread.start()
        return self

    def _start_beater(self) -> None:
        """Fork the beater (from the main thread, whose exit kills it); the thread's beats remain if it fails."""
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            log.warning("no beater process (%s): a rank holding the GIL over %.0f s will be declared dead",
                        exc, self.peer_timeout_s)
            return
        if pid == 0:
            try:
                _beat_for(parent, self._connect, f"{self.prefix}beat/{self.rank}", self.interval_s)
            finally:
                os._exit(0)
        self._beater = pid

    def _stop_beater(self) -> None:
        if self._beater is not None:
            try:
                os.kill(self._beater, signal.SIGKILL)
                os.waitpid(self._beater, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self._beater = None

    @contextmanager
    def in_step(self) -> Iterator[None]:
        """Mark the way to the next step boundary: only there does a stop request's timeout run. A step that
        raises never reached its boundary: the timeout keeps running while the error is handled."""
        self._step_since = time.monotonic()
        yield
        self._step_since = None

    def stop(self, failure: Optional[str] = None, collective: bool = False) -> None:
        """Stop watching; ``failure`` (this rank's error) is posted so peers exit at once, naming this rank.

        A ``collective`` failure is usually a peer's death seen through a broken connection: keep watching
        for up to ``peer_timeout_s`` so that the peer at fault is named (the thread exits the process)."""
        if collective and self._thread is not None and self._store is not None:
            self._thread.join(timeout=self.peer_timeout_s + 3 * self.interval_s)
        self._stop_beater()
        self._done.set()
        if self._store is not None:
            try:
                if failure:
                    self._post(f"rank {self.rank} failed: {failure[:500]}")
                else:
                    self._store.set(f"{self.prefix}left/{self.rank}", "")
            except Exception:  # noqa: BLE001 - the store's host is gone: peers find out through the heartbeats
                pass
        if self._thread is not None:
            self._thread.join(timeout=5 * self.interval_s)

    def _post(self, verdict: str) -> None:
        """Publish why the job must end; the first verdict posted is the one every rank reports."""
        self._store.compare_set(f"{self.prefix}verdict", "", verdict)

    def _peer_verdict(self, seen: list) -> Optional[str]:
        """Beat, read the job's verdict, and watch the next rank in a ring (one peer each keeps the store's
        load at three requests per rank and interval, whatever the world size)."""
        store, now = self._store, time.monotonic()
        store.add(f"{self.prefix}beat/{self.rank}", 1)
        if store.check([f"{self.prefix}verdict"]):
            return store.get(f"{self.prefix}verdict").decode()
        peer = (self.rank + 1) % self.world_size
        count = store.add(f"{self.prefix}beat/{peer}", 0)
        if count != seen[0]:
            seen[:] = [count, now]
        elif now - seen[1] > self.peer_timeout_s and not store.check([f"{self.prefix}left/{peer}"]):
            verdict = f"rank {peer} is dead, hung, or blocked holding the GIL: no heartbeat for {now - seen[1]:.0f} s"
            self._post(verdict)
            return verdict
        return None

    def _run(self) -> None:
        seen = [-1, time.monotonic()]  # the watched peer's last heartbeat count, and when it changed
        stop_since: Optional[float] = None
        last_tick = time.monotonic()
        while not self._done.wait(self.interval_s):
            now = time.monotonic()
            if now - last_tick > self.peer_timeout_s / 2:  # this thread was frozen (the GIL held): not the peer's gap
                seen[1] = now
            last_tick = now
            step_since = self._step_since
            if self.stop_requested():
                stop_since = stop_since or now
                if step_since is not None and now - max(stop_since, step_since) > self.stop_timeout_s:
                    _exit(EXIT_STOP_TIMEOUT, f"rank {self.rank}: a stop was requested {now - stop_since:.0f} s "
                          f"ago and the step did not reach its boundary within {self.stop_timeout_s:.0f} s (a peer "
                          "is stuck?); exiting without saving, resume from the last complete checkpoint")
            if self._store is None:
                continue
            try:
                verdict = self._peer_verdict(seen)
            except Exception as exc:  # noqa: BLE001 - any store error means its host is unreachable
                if self._done.is_set():
                    return
                verdict = f"the job's store at {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} " \
                          f"is unreachable (its host, rank 0 or the launcher, is gone): {exc}"
            if verdict is not None and not self._done.is_set():
                _exit(EXIT_PEER_FAILED, f"rank {self.rank} stops the job: {verdict}")
