"""The shared config sections (``train``, ``checkpoint``, ``logging``) as a run uses them: the process group's
collective timeout, the compile mode and the loop's settings, for pre-training and fine-tuning alike.

Both entry points go through :func:`run_setup`, so an option of these sections is honoured by both or by
neither (tests/train/test_run_setup.py walks every field).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch

from egovlpv2.dist.env import DistEnv, init_distributed, select_device
from egovlpv2.model.compile import CompileMode
from egovlpv2.train.loop import LoopSettings


@dataclass(frozen=True)
class RunSetup:
    collective_timeout_s: float
    compile: CompileMode
    # Everything but what the data decides (total_steps, evaluation cadence, FLOPs per step).
    loop: LoopSettings

    def start_distributed(self) -> tuple[DistEnv, torch.device]:
        """Initialise the process group with the collective timeout; returns (environment, device)."""
        env = init_distributed(timeout_s=self.collective_timeout_s)
        return env, select_device(env)

    def loop_settings(self, total_steps: int, eval_every: Optional[int], eval_at_end: bool,
                      flops_per_step: Optional[float] = None) -> LoopSettings:
        return dataclasses.replace(self.loop, total_steps=total_steps, eval_every=eval_every, eval_at_end=eval_at_end,
                                   flops_per_step=flops_per_step)


def run_setup(cfg) -> RunSetup:
    """``cfg``: a PretrainConfig or FinetuneConfig (anything with ``train``, ``checkpoint`` and ``logging``)."""
    train, checkpoint, logging = cfg.train, cfg.checkpoint, cfg.logging
    loop = LoopSettings(
        output_dir=train.output_dir, total_steps=0, grad_accum_steps=train.grad_accum_steps,
        checkpoint_every=checkpoint.every_steps, keep_last=checkpoint.keep_last, checkpoint_at_end=checkpoint.at_end,
        auto_resume=checkpoint.auto_resume, log_every=logging.every_steps, stop_after_steps=train.stop_after_steps,
        tensorboard=logging.tensorboard, progress_bar=logging.progress_bar,
        max_nonfinite_steps=train.max_nonfinite_steps, peer_timeout_s=train.peer_timeout_s,
        stop_timeout_s=train.stop_timeout_s)
    return RunSetup(collective_timeout_s=train.collective_timeout_s, compile=CompileMode(train.compile), loop=loop)
