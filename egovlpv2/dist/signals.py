"""Which signals ask a run to stop, who handles them, and the flag they set.

In the main process a stop signal only sets this process's stop flag (:func:`request_stop`, safe inside a
signal handler); the training loop agrees on it across ranks at its next step boundary.

SLURM, torchrun and the DeepSpeed launcher signal a job's whole process group, DataLoader workers included.
A worker killed by SIGTERM makes the main process raise ("DataLoader worker ... is killed by signal")
before it can save, so workers ignore these signals (:func:`ignore_stop_signals`, their ``worker_init_fn``)
and the main process alone decides: it saves at the next step boundary, then the workers are shut down.

At exit, multiprocessing stops daemonic children with SIGTERM and joins them; a loader abandoned with its
workers alive (an exception mid-epoch keeps its iterator referenced) would then hold the exit forever, so
this process kills its remaining daemonic children first (:func:`kill_daemonic_children`).
"""
from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util  # registers its exit handler first, so ours runs before it
import signal
import threading
from typing import Any, Iterable, Optional

# SIGUSR1: SLURM's advance warning (--signal), SIGTERM: preemption, scancel, a launcher shutting down.
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)

_STOP = threading.Event()


def request_stop(signum: Optional[int] = None, frame: Any = None) -> None:
    """Ask the run to save and exit at the next step boundary. Safe inside a signal handler."""
    _STOP.set()


def stop_requested() -> bool:
    """This process's own flag (not yet agreed with the other ranks)."""
    return _STOP.is_set()


def install_stop_handlers(signals: Iterable[int] = STOP_SIGNALS) -> None:
    """Make each signal in ``signals`` request a stop (main thread only)."""
    for signum in signals:
        signal.signal(signum, request_stop)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` of every DataLoader: leave stop signals (and Ctrl-C) to the main process."""
    for signum in (*STOP_SIGNALS, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


def kill_daemonic_children() -> None:
    """SIGKILL what is left of this process's daemonic children (DataLoader workers ignore SIGTERM)."""
    children = [child for child in multiprocessing.active_children() if child.daemon]
    if children:  # torch's SIGCHLD handler would report each one as a failed worker
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        child.kill()


atexit.register(kill_daemonic_children)
