"""Elastic resume, the engine's half: a checkpoint that loads at any world size and either ZeRO stage (the
loader's half, the rest of the epoch over the new ranks, is egovlpv2.data.elastic_epoch).

DeepSpeed's own checkpoint files are partitioned for the world size and ZeRO stage that wrote them. So every
save also writes the training state in a form that depends on neither, through DeepSpeed's public accessors
(``safe_get_full_fp32_param`` / ``safe_get_full_optimizer_state`` and their ``safe_set_*`` counterparts,
which do the partition bookkeeping for ZeRO-1/2/3)::

    <tag>/full_state/part_00000.pt   # {"params": {name: {"fp32", "exp_avg", "exp_avg_sq"}}, "engine": {...}}
    <tag>/full_state/part_00001.pt   # the parameters dealt to rank 1 (parameter i goes to rank i % world size)

Every rank gathers each whole tensor in turn (a collective) and keeps only its share, so writing costs one
all-gather per tensor and 12 bytes per trainable parameter on disk, split over the ranks. ``engine`` (rank
0's part) holds the scalars: optimizer step and hyper-parameters, LR scheduler, loss scaler, step counters.

A resume at another world size or stage builds the new engine as usual, then sets every parameter's fp32
master copy, both AdamW moments and the low-precision module weight from these files, and restores the
scalars. Nothing in here knows how ZeRO partitions a tensor.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from egovlpv2.train.checkpoint_commit import latest_complete_state

log = logging.getLogger(__name__)

FULL_STATE_DIR = "full_state"
MOMENTS = ("exp_avg", "exp_avg_sq")


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _trainable(engine) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name, p) for name, p in engine.module.named_parameters() if p.requires_grad]


def _basic_optimizer(engine):
    """The client torch optimizer inside DeepSpeed's ZeRO wrapper."""
    return getattr(engine.optimizer, "optimizer", engine.optimizer)


def _ensure_optimizer_states(engine) -> None:
    """Make the optimizer hold a state (moments, step) for every flat partition, and link each parameter's
    fragment to it (ZeRO-1/2), so that the ``safe_*`` accessors find the moments.

    Torch creates AdamW states at the first step of each group, and ZeRO-1/2 links fragments to them once,
    right after the first group's first step: later groups stay unlinked. A fresh engine (elastic load) has
    no states yet: one step on zero gradients creates them (the values are all overwritten right after).
    """
    basic, zero = _basic_optimizer(engine), engine.optimizer
    grouped = [p for group in basic.param_groups for p in group["params"]]
    # ZeRO-3 puts its flat fp32 partitions into the param groups only for the duration of a step.
    flat = getattr(zero, "fp32_partitioned_groups_flat", None) or grouped
    missing = [p for p in flat if not all(key in basic.state.get(p, {}) for key in MOMENTS)]
    if missing:
        extra = [p for p in missing if all(p is not q for q in grouped)]
        for p in missing:
            p.grad = torch.zeros_like(p)
        if extra:
            basic.add_param_group({"params": extra})
        try:
            basic.step()
        finally:
            if extra:
                basic.param_groups.pop()
            for p in missing:
                p.grad = None
    if hasattr(zero, "bit16_groups") and hasattr(zero, "single_partition_of_fp32_groups"):
        from deepspeed.utils import lazy_init_hp_params_optimizer_state

        for lp_params, hp_partition in zip(zero.bit16_groups, zero.single_partition_of_fp32_groups):
            lazy_init_hp_params_optimizer_state(lp_params, hp_partition, basic.state)


def _engine_scalars(engine) -> dict:
    basic = _basic_optimizer(engine)
    steps = {float(s["step"]) for s in basic.state.values() if "step" in s}
    if len(steps) > 1:
        raise RuntimeError(f"optimizer states disagree on the step count: {sorted(steps)}")
    scaler = getattr(engine.optimizer, "loss_scaler", None)
    return {
        "adam_step": steps.pop() if steps else None,
        "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in basic.param_groups],
        "lr_scheduler": engine.lr_scheduler.state_dict() if engine.lr_scheduler is not None else None,
        "loss_scaler": {k: v for k, v in vars(scaler).items() if isinstance(v, (bool, int, float))}
        if scaler is not None else None,
        "global_steps": engine.global_steps, "global_samples": engine.global_samples,
        "skipped_steps": engine.skipped_steps,
    }


def save_full_state(engine, tag_dir: Path) -> None:
    """Collective: write this rank's share of the world-size-independent state under ``tag_dir`` (ZeRO-1/2/3;
    nothing without ZeRO, whose DeepSpeed checkpoint is not partitioned)."""
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    if engine.zero_optimization_stage() == 0:
        return
    rank, world = _rank_world()
    _ensure_optimizer_states(engine)
    share = {}
    for i, (name, param) in enumerate(_trainable(engine)):
        tensors = {"fp32": safe_get_full_fp32_param(param)}
        for key in MOMENTS:
            tensors[key] = safe_get_full_optimizer_state(param, key)
        if i % world == rank:
            missing = [k for k, v in tensors.items() if v is None]
            if missing:
                raise RuntimeError(f"DeepSpeed returned no {missing} for {name}: not a ZeRO engine with AdamW states?")
            share[name] = {k: v.detach().float().cpu().reshape(param.ds_shape if hasattr(param, "ds_shape")
                                                                  else param.shape).clone()
                           for k, v in tensors.items()}
    out = Path(tag_dir) / FULL_STATE_DIR
    out.mkdir(parents=True, exist_ok=True)
    payload = {"params": share, "engine": _engine_scalars(engine) if rank == 0 else None}
    torch.save(payload, out / f"part_{rank:05d}.pt")


def has_full_state(tag_dir: Path) -> bool:
    return (Path(tag_dir) / FULL_STATE_DIR / "part_00000.pt").is_file()


def _read_full_state(tag_dir: Path) -> tuple[dict, dict]:
    params, scalars = {}, None
    for part in sorted((Path(tag_dir) / FULL_STATE_DIR).glob("part_*.pt")):
        payload = torch.load(part, map_location="cpu", weights_only=True, mmap=True)
        params.update(payload["params"])
        scalars = payload["engine"] if payload["engine"] is not None else scalars
    if scalars is None:
        raise FileNotFoundError(f"{tag_dir / FULL_STATE_DIR} lacks part_00000.pt (the engine's step and schedule)")
    return params, scalars


def load_full_state(engine, tag_dir: Path) -> None:
    """Collective: restore weights, AdamW moments, step, schedule and loss scale written by
    :func:`save_full_state` at any world size and ZeRO stage into ``engine``."""
    import deepspeed
    from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

    params, scalars = _read_full_state(tag_dir)
    names = [name for name, _ in _trainable(engine)]
    if set(names) != set(params):
        raise RuntimeError(f"{tag_dir}: the saved parameters differ from the model's "
                           f"(missing {sorted(set(names) - set(params))[:5]}, extra {sorted(set(params) - set(names))[:5]})")
    _restore_scalars(engine, scalars)  # first: it creates the optimizer states that the moments go into
    for name, param in _trainable(engine):
        saved = params[name]
        if _z3_partition_padded(param):
            for key in (None, *MOMENTS):
                _set_z3_padded(param, saved[key or "fp32"], key)
        else:
            safe_set_full_fp32_param(param, saved["fp32"])
            for key in MOMENTS:
                safe_set_full_optimizer_state(param, saved[key], key)
        # The module's (low-precision) weight is a copy that DeepSpeed refreshes only after a step.
        with deepspeed.zero.GatheredParameters([param], modifier_rank=0):
            param.data.copy_(saved["fp32"].to(param.dtype).reshape(param.shape))
    log.info("loaded the world-size-independent state of %s (%d tensors)", tag_dir, len(names))


def _z3_partition_padded(param) -> bool:
    """A ZeRO-3 parameter whose size is not a multiple of the world size (its last partition is padded)."""
    return hasattr(param, "ds_id") and param.ds_tensor.numel() * _rank_world()[1] != param.ds_numel


def _set_z3_padded(param, value: torch.Tensor, key: Optional[str]) -> None:
    """``safe_set_full_*`` for a padded ZeRO-3 parameter: DeepSpeed 0.19.8's Stage-3 ``set_full_hp_param``
    takes this rank's slice of the unpadded value, which runs past its end on the last ranks. These are
    its own calls, with the value padded the way ZeRO-3 pads the partitions."""
    optimizer = param._z3_optimizer
    partition, group = optimizer._get_fp32_opt_state_partition(param, release_swap_buffers=False,
                                                               optim_state_key=key)
    size = partition.numel()
    padded = torch.zeros(size * _rank_world()[1], dtype=partition.dtype)
    padded[:value.numel()] = value.flatten()
    partition.data.copy_(padded.narrow(0, size * optimizer._get_param_partition_rank(param), size))
    if optimizer._swappable_optimizer_subgroup(group):
        optimizer._optimizer_states_and_gradient_swap_out(group)


def _restore_scalars(engine, scalars: dict) -> None:
    basic = _basic_optimizer(engine)
    _ensure_optimizer_states(engine)
    for state in basic.state.values():
        if "step" in state and scalars["adam_step"] is not None:
            step = state["step"]
            state["step"] = torch.full_like(step, scalars["adam_step"]) if torch.is_tensor(step) else scalars["adam_step"]
    for group, saved in zip(basic.param_groups, scalars["param_groups"]):
        group.update(saved)
    if scalars["lr_scheduler"] is not None and engine.lr_scheduler is not None:
        engine.lr_scheduler.load_state_dict(scalars["lr_scheduler"])
    scaler = getattr(engine.optimizer, "loss_scaler", None)
    for key, value in (scalars["loss_scaler"] or {}).items():
        if scaler is not None and hasattr(scaler, key):
            setattr(scaler, key, value)
    engine.global_steps = scalars["global_steps"]
    engine.global_samples = scalars["global_samples"]
    engine.skipped_steps = scalars["skipped_steps"]


def needs_elastic_load(trainer_state: dict, world_size: int, zero_stage: int) -> bool:
    """True when the checkpoint's world size or ZeRO stage differs from this run's."""
    return trainer_state["world_size"] != world_size or trainer_state.get("zero_stage", zero_stage) != zero_stage


def resharded_rank_state(tag_dir: Path, rank: int, world_size: int, saved_world: int) -> tuple[Optional[dict], dict]:
    """(RNG state to restore or None, rank state for the loop) for ``rank`` of a new world of ``world_size``.

    A rank that existed before takes back its RNG streams (dropout), a new one keeps its fresh seed. The
    loader positions of all old ranks go to every new rank as ``{"resharded_from": [...]}`` (old rank order):
    the data source re-deals the rest of the epoch from them.
    """
    states = [torch.load(Path(tag_dir) / f"rank_{r:05d}.pt", weights_only=True) for r in range(saved_world)]
    rng = states[rank]["rng"] if rank < saved_world else None
    return rng, {"loader": {"resharded_from": [s.get("loader") for s in states], "world_size": world_size}}


def steps_for_epochs(checkpoint_dir: Path, world_size: int, epochs: float, steps_per_epoch: int,
                     global_batch: int) -> int:
    """The step budget of a run trained by epochs, ``epochs * steps_per_epoch`` at this world size, counted in
    samples: the latest checkpoint's steps plus enough steps of ``global_batch`` samples to consume what the
    budget still holds. Without elastic resumes that is the same number; after one it ends the epochs where
    the samples end, not where the old world size's step count would."""
    total = math.ceil(epochs * steps_per_epoch)
    found = latest_complete_state(Path(checkpoint_dir))  # the checkpoint the loop will resume from
    if found is None:
        return total
    state = found[1]
    if "global_samples" not in state:
        return total
    left = epochs * steps_per_epoch * global_batch - state["global_samples"]
    return state["step"] + max(0, math.ceil(left / global_batch))


def describe(trainer_state: dict, world_size: int, zero_stage: Optional[int] = None) -> str:
    """One line on what an elastic resume of ``trainer_state`` at ``world_size`` does (for submit.py and logs)."""
    saved = trainer_state["world_size"]
    parts = [f"world size {saved} -> {world_size}"] if saved != world_size else []
    if zero_stage is not None and trainer_state.get("zero_stage", zero_stage) != zero_stage:
        parts.append(f"ZeRO stage {trainer_state['zero_stage']} -> {zero_stage}")
    return (f"step {trainer_state['step']}: " + ", ".join(parts) + ": weights, AdamW moments, step and schedule load "
            "from the checkpoint's full_state/, the rest of the epoch's samples are dealt over the new ranks")
