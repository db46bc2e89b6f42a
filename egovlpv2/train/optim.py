"""AdamW parameter groups and the warm-up + cosine learning-rate schedule of the paper's recipe (EgoVLPv2,
ICCV 2023, implementation details; official code: EgoVLPv2/configs/pt/egoclip.json).

Groups are decided by parameter name and shape:
- no weight decay on biases, norms and gates (every parameter with at most one dimension) and on
  embeddings (token/position/temporal embeddings, CLS tokens);
- ``lr * cross_modal_lr_mult`` for the cross-modal modules (cross-attention, gates, the fused path's
  CLS/norm, the cross-modal transforms and poolers) and the heads (VTM, MLM).
"""
from __future__ import annotations

import math
import re
from typing import Iterable

import torch
from torch import nn

from egovlpv2.train.config import OptimConfig

# Matched against the model's dotted parameter names (case-insensitive); released checkpoints are renamed to
# these names when they load (egovlpv2/model/loading.py), so only our names occur.
CROSS_MODAL_PATTERNS = (r"cross", r"fuse", r"gate", r"vtm", r"mlm", r"pooler")
NO_DECAY_PATTERNS = (r"(?<!patch_)embed", r"cls_token", r"gate")


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(re.search(p, name, flags=re.IGNORECASE) for p in patterns)


def is_cross_modal(name: str) -> bool:
    return _matches(name, CROSS_MODAL_PATTERNS)


def is_no_decay(name: str, param: torch.Tensor) -> bool:
    return param.ndim <= 1 or _matches(name, NO_DECAY_PATTERNS)


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Up to four groups: {backbone, cross-modal} x {decay, no decay}; each carries a `name` for logging."""
    groups: dict[tuple[bool, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (is_cross_modal(name), is_no_decay(name, param))
        if key not in groups:
            cross, no_decay = key
            groups[key] = {
                "name": f"{'cross_modal' if cross else 'backbone'}_{'no_decay' if no_decay else 'decay'}",
                "params": [],
                "param_names": [],
                "lr": cfg.lr * (cfg.cross_modal_lr_mult if cross else 1.0),
                "weight_decay": 0.0 if no_decay else cfg.weight_decay,
            }
        groups[key]["params"].append(param)
        groups[key]["param_names"].append(name)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(model: nn.Module, cfg: OptimConfig, cpu_offload: bool = False) -> torch.optim.Optimizer:
    """A client AdamW (DeepSpeed wraps it; no fused_adam build needed).

    With ZeRO optimizer offload the step runs on the CPU's fp32 master weights, where DeepSpeed's
    vectorised CPU Adam (same AdamW maths) is several times faster than torch's.
    """
    groups = [{k: v for k, v in g.items() if k != "param_names"} for g in param_groups(model, cfg)]
    kwargs = dict(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cpu_offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, adamw_mode=True, **kwargs)
    return torch.optim.AdamW(groups, **kwargs)


def lr_factor(step: int, total_steps: int, warmup_fraction: float, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based): linear warm-up, then cosine."""
    warmup = int(round(warmup_fraction * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int):
    """LambdaLR stepped once per optimizer step; it scales every group's own peak lr."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, cfg.warmup_fraction, cfg.min_lr_ratio)
    )
