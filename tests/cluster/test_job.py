"""Rank 0 hands a stopped job over to submitit's requeue (egovlpv2/cluster/job.py)."""
from __future__ import annotations

import signal
import subprocess

import pytest

from egovlpv2.cluster.job import LaunchedJob


def _requeue_failing_with(returncode: int, cmd: list[str]):
    """A submitit handler whose scontrol call ends with ``returncode``."""
    def handler(signum, frame):
        raise subprocess.CalledProcessError(returncode, cmd)
    return handler


def test_a_requeue_that_ends_scontrol_before_it_returns_exits_as_requeued():
    # the requeue cancels the job's processes, scontrol among them, at times before scontrol returns
    handler = _requeue_failing_with(-signal.SIGTERM, ["scontrol", "requeue", "7"])
    with pytest.raises(SystemExit) as exited:
        LaunchedJob._hand_over_to_submitit(0, signal.SIGUSR2, handler)
    assert exited.value.code == 0


@pytest.mark.parametrize("returncode, cmd", [(1, ["scontrol", "requeue", "7"]),
                                             (-signal.SIGTERM, ["scontrol", "show", "job", "7"])])
def test_any_other_failure_of_the_hand_over_is_raised(returncode, cmd):
    with pytest.raises(subprocess.CalledProcessError):
        LaunchedJob._hand_over_to_submitit(0, signal.SIGUSR2, _requeue_failing_with(returncode, cmd))
