"""The callable that submitit runs on every task of a job: distributed environment, entry point, requeue.

Time limits and preemption (SLURM sends ``--signal=USR2@<delay>`` to every task of the job):

1. submitit installs a USR2 handler on every task that checkpoints and requeues on rank 0 at once. That
   must not happen mid-step: a DeepSpeed save is collective. So before the entry point runs, USR2 is
   routed to ``egovlpv2.dist.signals.request_stop`` on every rank: it only sets a flag.
2. At the next step boundary all ranks agree on the flag (an all-reduce), save together, and the entry
   point returns a result with ``stopped`` set.
3. Then rank 0 alone hands over to submitit's own handler, which calls :meth:`LaunchedJob.checkpoint`
   (it only resubmits this same callable), requeues the job and exits; submitit counts time-outs there
   (``max_num_timeout``). The other ranks exit without a result: the job is not over.
4. The requeued job runs the same pickled callable on the same code snapshot (the entry function is
   pickled by module and name, so it is imported from the snapshot); the entry point resumes
   from ``latest`` in its run directory, and a finished run directory returns at once.

A stop for another reason (SIGTERM from ``scancel``, a SLURM-side requeue or preemption; a user's
SIGUSR1) is not requeued here: SLURM is already ending or requeueing the job, or the user asked it to
stop. The checkpoint is saved all the same (if the step ends within SLURM's KillWait), and no result is
written, since the run is not over.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)


def log_to_stderr(logger: logging.Logger) -> None:
    """``logger``'s messages go to the task's stderr log next to submitit's, whatever the entry configures."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


@dataclass
class LaunchedJob:
    """Runs ``entry(value)`` on one submitit task.

    ``value`` is the typed argument of the library function behind the entry (a resolved config, an
    ``EvalRun``...), pickled with the job. ``workdir`` is where the job was submitted from: relative paths
    in ``value`` mean what they meant there, while the code is imported from the run's snapshot (the job
    starts in the snapshot directory, first on ``sys.path``).
    """

    entry: Callable[[Any], Any]
    value: Any
    workdir: str | None = None

    def __call__(self) -> Any:
        import submitit

        from egovlpv2.dist.env import detect, export
        from egovlpv2.dist import rendezvous_port
        from egovlpv2.dist.signals import request_stop
        from egovlpv2.dist.slurm import restart_count

        log_to_stderr(log)  # launch messages
        log_to_stderr(rendezvous_port.log)
        job_env = submitit.JobEnvironment()
        env = detect()  # submitit's JobEnvironment -> RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
        if env.source == "submitit":  # the derived port may be taken on the first node
            env = rendezvous_port.agree_on_port(env, job_env.paths.folder, job_env.job_id, restart_count())
        export(env)  # every entry point's env:// rendezvous (and evaluation's LOCAL_RANK) reads the same
        log.info("%s -> rank %d/%d, master %s:%d", job_env, env.rank, env.world_size, env.master_addr, env.master_port)
        if self.workdir:
            os.chdir(self.workdir)

        usr_sig = job_env._usr_sig()
        submitit_handler = signal.getsignal(usr_sig)
        received: list[int] = []

        def stop_at_next_step(signum: int, frame: Any) -> None:
            received.append(signum)
            request_stop(signum, frame)

        signal.signal(usr_sig, stop_at_next_step)
        result = self.entry(self.value)
        if getattr(result, "stopped", False):
            if received:
                self._hand_over_to_submitit(env.rank, usr_sig, submitit_handler)
            else:
                log.warning("stopped by another signal at step %s, checkpoint saved; not requeueing "
                            "(submit the same run again to resume)", getattr(result, "step", "?"))
                sys.exit(0)  # no result file: the run is not over
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
            log.info("stopped for the time limit or preemption; rank 0 requeues the job")
            sys.exit(0)  # no result file: the job is not over
        if not callable(submitit_handler):  # debug executor: nothing to requeue into
            log.warning("stopped outside a requeueable job; submit again to resume from the checkpoint")
            return
        log.info("stopped for the time limit or preemption, checkpoint saved: requeueing")
        try:
            submitit_handler(usr_sig, None)  # checkpoint() -> scontrol requeue -> SystemExit
        except subprocess.CalledProcessError as exc:
            # The requeue ends this job's processes, scontrol among them, at times before scontrol returns.
            if exc.cmd[:2] != ["scontrol", "requeue"] or exc.returncode != -signal.SIGTERM:
                raise
            log.info("requeued (scontrol was ended by the requeue itself)")
            sys.exit(0)  # no result file: the job is not over
