"""Non-finite steps: counted, reported, and fatal after a few in a row; never saved as a checkpoint.

A step is non-finite when its loss or gradient norm is NaN/inf on any rank, or when DeepSpeed skipped its
optimizer update (fp16/bf16 overflow). One such step can be a glitch the loss scaler absorbs; a run of
``max_consecutive`` means the run diverged, and training on would only burn compute (and, before this
guard, end with exit 0 and a checkpoint of NaN weights).
"""
from __future__ import annotations

import logging
import math

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


class DivergenceError(RuntimeError):
    """The run diverged: too many consecutive non-finite steps, or non-finite weights."""


def _any_rank(flag: bool, device: torch.device) -> bool:
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def weights_finite(engine, device: torch.device) -> bool:
    """Collective: every rank's share of the weights is finite (ZeRO-3 partitions checked where they live)."""
    bad = False
    for param in engine.module.parameters():
        data = getattr(param, "ds_tensor", param)
        if data.numel() and not bool(torch.isfinite(data.detach()).all()):
            bad = True
            break
    return not _any_rank(bad, device)


class NonFiniteGuard:
    """Tracks non-finite steps across ranks; raises :class:`DivergenceError` after ``max_consecutive``."""

    def __init__(self, engine, device: torch.device, max_consecutive: int):
        self.engine, self.device, self.max_consecutive = engine, device, max_consecutive
        self.total = 0
        self.consecutive = 0
        self._skipped_before = getattr(engine, "skipped_steps", 0)

    def record(self, step: int, parts: dict[str, torch.Tensor]) -> bool:
        """Collective, after each step; True if the step was non-finite on some rank."""
        skipped = getattr(self.engine, "skipped_steps", 0)
        local = skipped != self._skipped_before or not all(
            math.isfinite(float(parts[k])) for k in ("loss", "grad_norm") if k in parts)
        self._skipped_before = skipped
        if not _any_rank(local, self.device):
            self.consecutive = 0
            return False
        self.total += 1
        self.consecutive += 1
        log.warning("step %d is non-finite (loss %s, grad norm %s): %d in a row, %d in this run", step,
                    float(parts.get("loss", float("nan"))), float(parts.get("grad_norm", float("nan"))),
                    self.consecutive, self.total)
        if self.consecutive >= self.max_consecutive:
            raise DivergenceError(
                f"the run diverged: {self.consecutive} consecutive non-finite steps (up to step {step}, "
                f"train.max_nonfinite_steps={self.max_consecutive}); the last complete checkpoint stays in charge. "
                "Lower the learning rate or check the data, then resume or restart.")
        return True

    def check_weights_before_save(self, step: int) -> None:
        """Collective; raises rather than let a checkpoint of non-finite weights become ``latest``."""
        if not weights_finite(self.engine, self.device):
            raise DivergenceError(f"the weights are non-finite at step {step}: not saving them; the last complete "
                                  "checkpoint stays in charge. Lower the learning rate or check the data.")
