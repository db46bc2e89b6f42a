"""DeepSpeed engine set-up: the JSON config reconciled with the recipe, and the model wrapped with its objective.

One source of truth: the recipe (YAML) owns the batch geometry (micro-batch, gradient accumulation) and the
optimiser/schedule; the DeepSpeed JSON owns ZeRO stage, precision, clipping and communication. Batch keys
in the JSON may be absent or ``"auto"`` (filled from the recipe); any other value must agree with the
recipe, checked before the engine exists so a mismatch fails fast instead of training with other numbers.
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from egovlpv2.config import ConfigError
from egovlpv2.model.compile import CompileMode, zero3_leaf_classes
from egovlpv2.recipes import resolve_recipe
from egovlpv2.train.config import OptimConfig
from egovlpv2.train.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

# objective(batch, step) -> (loss, parts); `step` keys random draws (MLM masks, VTM negatives) for exact resume.
Objective = Callable[[dict, int], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


def load_ds_config(config: str | Path) -> dict:
    """A DeepSpeed JSON path, or the name of a shipped one (``zero2``, ``zero2_offload``, ``zero3``)."""
    path = resolve_recipe("deepspeed", config)
    if not path.is_file():
        raise ConfigError(f"DeepSpeed config not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc


def _agree(ds: dict, key: str, value: int, source: str) -> None:
    current = ds.get(key, "auto")
    if current != "auto" and int(current) != value:
        raise ConfigError(f"DeepSpeed config {key}={current} disagrees with the recipe ({source} gives {value})")
    ds[key] = value


def reconcile_ds_config(ds_config: dict, micro_batch_size: int, grad_accum_steps: int, world_size: int,
                        precision: Optional[str] = None) -> dict:
    """Return a copy of ``ds_config`` with the recipe's batch geometry, after checking every rule.

    ``micro_batch_size`` is the recipe's ``data.batch_size`` (anchors per rank per micro-step);
    ``precision`` (bf16/fp16/fp32), when given, replaces the JSON's.
    """
    ds = copy.deepcopy(ds_config)
    if precision is not None:
        ds.setdefault("bf16", {})["enabled"] = precision == "bf16"
        ds.setdefault("fp16", {})["enabled"] = precision == "fp16"
    for owned in ("optimizer", "scheduler"):
        if owned in ds:
            raise ConfigError(
                f"DeepSpeed config has an {owned!r} block; the optimiser and schedule come from the recipe's "
                "`optim` section (AdamW param groups, warm-up + cosine). Remove the block."
            )
    if "gradient_clipping" not in ds:
        # DeepSpeed >= 0.19.3 clips at 1.0 when the key is absent; make the choice visible instead.
        raise ConfigError("DeepSpeed config must set gradient_clipping explicitly (0 disables clipping)")
    if ds.get("activation_checkpointing"):
        raise ConfigError(
            "DeepSpeed's activation_checkpointing block does nothing for this model; "
            "use the recipe's train.grad_checkpointing switch (per-block torch.utils.checkpoint)"
        )
    _agree(ds, "train_micro_batch_size_per_gpu", micro_batch_size, "data.batch_size")
    _agree(ds, "gradient_accumulation_steps", grad_accum_steps, "train.grad_accum_steps")
    _agree(ds, "train_batch_size", micro_batch_size * grad_accum_steps * world_size,
           f"data.batch_size x train.grad_accum_steps x world size {world_size}")
    if ds.get("bf16", {}).get("enabled") and ds.get("fp16", {}).get("enabled"):
        raise ConfigError("DeepSpeed config enables both bf16 and fp16")
    if ds.get("bf16", {}).get("enabled"):
        # Without this DeepSpeed accumulates gradients across micro-steps in bf16.
        ds.setdefault("data_types", {}).setdefault("grad_accum_dtype", "fp32")
    ds.setdefault("steps_per_print", 10**9)  # the loop logs; DeepSpeed's own prints would interleave
    ds.setdefault("wall_clock_breakdown", False)
    return ds


def precision_dtype(ds_config: dict) -> torch.dtype:
    if ds_config.get("bf16", {}).get("enabled"):
        return torch.bfloat16
    if ds_config.get("fp16", {}).get("enabled"):
        return torch.float16
    return torch.float32


class ObjectiveModule(nn.Module):
    """The module DeepSpeed wraps: ``forward(batch, step)`` runs ``objective(batch, step)`` on ``model``.

    Routing every call through this forward lets ZeRO-3 fetch partitioned parameters: parameters owned
    directly by container modules (CLS tokens, position embeddings) are registered as used by this
    module, since the objective reaches the model through methods other than ``forward``.
    ``forward(batch, call=fn)`` runs ``fn(model, batch)`` instead (evaluation under the same hooks).
    """

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model = model
        if isinstance(objective, nn.Module):
            own = {id(p) for p in model.parameters()}
            extra = [n for n, p in objective.named_parameters() if id(p) not in own]
            if extra:
                raise ValueError(f"the objective has parameters outside the model, which would not train: {extra}")
        object.__setattr__(self, "objective", objective)  # not a submodule: its parameters are the model's

    def forward(self, batch: Any, step: Optional[int] = None, call: Optional[Callable] = None):
        if call is not None:
            return call(self.model, batch)
        return self.objective(batch, step)


_LEAF_TYPES = (nn.Linear, nn.LayerNorm, nn.Embedding, nn.Conv2d, nn.Conv3d)


def register_container_parameters(wrapper: ObjectiveModule) -> int:
    """Under ZeRO-3, mark parameters held directly by container modules as used by ``wrapper.forward``."""
    import deepspeed

    register_external_parameter = deepspeed.zero.register_external_parameter

    count = 0
    for module in wrapper.model.modules():
        if isinstance(module, _LEAF_TYPES):
            continue
        for param in module.parameters(recurse=False):
            register_external_parameter(wrapper, param)
            count += 1
    return count


def build_engine(
    model: nn.Module,
    objective: Objective,
    ds_config: dict,
    optim: OptimConfig,
    total_steps: int,
    compile_mode: CompileMode = CompileMode.OFF,
):
    """``deepspeed.initialize`` with a client AdamW and LambdaLR; returns the engine (its module is an ObjectiveModule).

    ``compile_mode``: how ``model`` was compiled (ZeRO-3 then treats compiled blocks as leaves)."""
    import deepspeed

    wrapper = ObjectiveModule(model, objective)
    offload = ds_config.get("zero_optimization", {}).get("offload_optimizer", {}).get("device", "none")
    optimizer = build_optimizer(wrapper.model, optim, cpu_offload=offload == "cpu")
    scheduler = build_scheduler(optimizer, optim, total_steps)
    leaves = zero3_leaf_classes(model, compile_mode)
    if leaves and ds_config.get("zero_optimization", {}).get("stage") == 3:
        deepspeed.utils.set_z3_leaf_modules(model, leaves)
    engine, _, _, _ = deepspeed.initialize(
        model=wrapper, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
    )
    if engine.zero_optimization_stage() == 3:
        register_container_parameters(wrapper)
    return engine


def unwrap_model(engine) -> nn.Module:
    """The EgoVLPv2 model inside the engine."""
    return engine.module.model
