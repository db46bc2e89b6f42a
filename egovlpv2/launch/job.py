"""The callable that submitit runs on every task of a job: distributed environment, entry point, requeue.

Preemption and time limits (SLURM sends ``--signal=USR2@<delay>`` to every task of the job):

1. Before the entry point runs, submitit has installed its USR2 handler on every task. That handler
   checkpoints and requeues on rank 0 immediately, which must not happen mid-step: a DeepSpeed save is
   collective. The entry point therefore installs its own preemption handler for that signal (every
   rank), which only sets a flag.
2. At the next step boundary all ranks agree on the flag (an all-reduce), save together, and return a
   result whose ``preempted`` is true.
3. Then rank 0 alone hands over to submitit's own handler, which calls :meth:`LaunchedJob.checkpoint`
   (it only resubmits this same callable), requeues the job and exits; submitit counts time-outs there
   (``max_num_timeout``) and tells a time-out from a preemption. The other ranks exit quietly.
4. The requeued job runs the same pickled callable on the same code snapshot; the entry point resumes
   from ``latest`` in its run directory, and a finished run directory returns at once.
"""
from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from egovlpv2.dist.slurm import setup_task_environment

log = logging.getLogger(__name__)


def _log_to_stderr() -> None:
    """Launch messages go to the task's stderr log next to submitit's, whatever the entry configures."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def resolve_entry(entry: str) -> Callable[[list[str]], Any]:
    """``"package.module:function"`` -> the function."""
    module_name, sep, attr = entry.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"entry point {entry!r} is not of the form 'package.module:function'")
    return getattr(importlib.import_module(module_name), attr)


def was_preempted(result: Any) -> bool:
    if isinstance(result, dict):
        return bool(result.get("preempted", False))
    return bool(getattr(result, "preempted", False))


@dataclass
class LaunchedJob:
    """Runs ``entry(argv)`` on one submitit task.

    ``entry`` is ``"package.module:function"``; the function takes the same arguments as the launch
    script in ``launch/``. ``workdir`` is where the job was submitted from: relative data paths in
    ``argv`` mean what they meant there, while the code itself is imported from the run's snapshot
    (the job starts in the snapshot directory).
    """

    entry: str
    argv: list[str] = field(default_factory=list)
    workdir: str | None = None

    def __call__(self) -> Any:
        import submitit

        job_env = submitit.JobEnvironment()
        env = setup_task_environment(job_env)
        _log_to_stderr()
        log.info("%s -> rank %d/%d, master %s:%d", job_env, env.rank, env.world_size, env.master_addr, env.master_port)
        if self.workdir:
            os.chdir(self.workdir)
        usr_sig = job_env._usr_sig()
        submitit_handler = signal.getsignal(usr_sig)
        result = resolve_entry(self.entry)(list(self.argv))
        if was_preempted(result):
            self._hand_over_to_submitit(env.rank, usr_sig, submitit_handler)
        return result

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Called by submitit on rank 0 alone: only resubmit this callable; the entry point saved already.

        Saving here would deadlock or corrupt the checkpoint: a DeepSpeed save needs every rank.
        """
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    @staticmethod
    def _hand_over_to_submitit(rank: int, usr_sig: int, submitit_handler: Any) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank's share of the checkpoint is on disk before the job is requeued
            dist.destroy_process_group()
        if rank != 0:
            log.info("preempted: checkpoint saved, rank 0 requeues the job")
            sys.exit(0)  # no result file: the job is not over
        if not callable(submitit_handler):  # debug executor: nothing to requeue into
            log.warning("preempted outside a requeueable submitit job; rerun to resume from the checkpoint")
            return
        log.info("preempted: checkpoint saved, requeueing")
        submitit_handler(usr_sig, None)  # checkpoint() -> requeue -> SystemExit
