"""Which signals ask a run to stop, and who handles them.

SLURM, torchrun and the DeepSpeed launcher signal a job's whole process group, DataLoader workers included.
A worker killed by SIGTERM makes the main process raise ("DataLoader worker ... is killed by signal")
before it can save, so workers ignore these signals (:func:`ignore_stop_signals`, their ``worker_init_fn``)
and the main process alone decides: it saves at the next step boundary, then the workers are shut down.
"""
from __future__ import annotations

import signal

# SIGUSR1: SLURM's advance warning (--signal), SIGTERM: preemption, scancel, a launcher shutting down.
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` of every DataLoader: leave stop signals (and Ctrl-C) to the main process."""
    for signum in (*STOP_SIGNALS, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
