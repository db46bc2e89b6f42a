"""Where evaluation runs: the device, this process's share of the samples, and reassembly across ranks.

Samples are dealt round-robin (sample i goes to rank i % world_size), so no rank pads its share with
duplicates; the per-sample results are gathered with their indices and reassembled in order, and a
missing or repeated index is an error rather than a silently skewed metric.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from egovlpv2.dist import collectives as C

T = TypeVar("T")


@dataclass(frozen=True)
class EvalContext:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    # Autocast dtype on the accelerator (None = full precision).
    amp_dtype: torch.dtype | None = None
    # Every rank runs the same number of batches (needed when each forward is a collective, as under
    # ZeRO-3): shares are padded with repeats of a rank's own samples, marked with index -1 and dropped
    # before gathering, so each sample still counts once.
    equal_batches: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        enabled = self.amp_dtype is not None
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=enabled)


# --precision choices of the evaluation commands -> autocast dtype (None: fp32, no autocast).
AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """The model in eval mode (no dropout) for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def current_context(device: str | torch.device | None = None, amp_dtype: torch.dtype | None = None) -> EvalContext:
    """The context of this process: the process group's rank and size if one is initialised."""
    rank, world = C.rank(), C.world_size()
    if device is None:
        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        else:
            device = torch.device("cpu")
    return EvalContext(torch.device(device), rank, world, amp_dtype)


def share_indices(count: int, ctx: EvalContext) -> list[int]:
    """This rank's indices rank, rank + world_size, ...; with `equal_batches`, padded to ceil(count / world)
    with `-1 - i` for a repeat of sample i."""
    mine = list(range(ctx.rank, count, ctx.world_size))
    if ctx.equal_batches:
        target = -(-count // ctx.world_size)
        mine += [-1 - (mine[0] if mine else 0)] * (target - len(mine))
    return mine


def my_share(items: Sequence[T], ctx: EvalContext) -> Iterator[tuple[int, T]]:
    """(global index, item) for the items this rank scores (index -1: a padding repeat)."""
    for index in share_indices(len(items), ctx):
        yield (index, items[index]) if index >= 0 else (-1, items[-1 - index])


def progress(iterable: Iterable[T], ctx: EvalContext, desc: str, total: int | None = None) -> Iterable[T]:
    """A progress bar on the main rank (`total`: this rank's count); silent on the others."""
    return tqdm(iterable, desc=desc, total=total, disable=not ctx.is_main, dynamic_ncols=True)


def gather_rows(indices: list[int], rows: list[torch.Tensor], ctx: EvalContext, what: str) -> torch.Tensor:
    """Stack per-sample rows from every rank in global index order, on every rank (on the CPU).

    Rows with index -1 (padding repeats) are dropped. Raises if an index is missing or appears twice:
    every sample is scored exactly once.
    """
    keep = [k for k, i in enumerate(indices) if i >= 0]
    indices, rows = [indices[k] for k in keep], [rows[k] for k in keep]
    local = (list(indices), torch.stack(rows).cpu() if rows else None)
    if ctx.world_size > 1:
        shards: list = [None] * ctx.world_size
        dist.all_gather_object(shards, local)
    else:
        shards = [local]
    all_indices = [i for idx, _ in shards for i in idx]
    if not all_indices:
        raise ValueError(f"no {what} was scored: the evaluation data is empty")
    if sorted(all_indices) != list(range(len(all_indices))):
        seen: set[int] = set()
        repeated = sorted({i for i in all_indices if i in seen or seen.add(i)})
        missing = sorted(set(range(max(all_indices) + 1)) - seen)
        problems = ([f"scored twice: {repeated[:10]}"] if repeated else []) + (
            [f"never scored: {missing[:10]}"] if missing else [])
        raise RuntimeError(f"{what}: samples {'; '.join(problems)} across ranks")
    stacked = torch.cat([t for _, t in shards if t is not None])
    order = torch.as_tensor(all_indices).argsort()
    return stacked[order]

