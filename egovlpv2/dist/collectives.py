"""Collectives for the losses: correct gradients, uneven batches, and no process group needed at world size 1.

Every function here works unchanged without ``torch.distributed`` initialised (it then acts on one rank),
so the losses run the same code on a workstation and on hundreds of GPUs.

Gradients: ``all_gather_with_grad`` is the operation the distributed contrastive loss hinges on. Every rank
computes its own rows of a loss that reads the *gathered* tensor, so the gradient of rank r's slice is the
sum, over all ranks, of the gradient each rank's loss sends to that slice. Its backward therefore sums the
incoming gradients across ranks before slicing; a backward that only slices would drop the other ranks'
contributions and make the gradient depend on the world size.

Traffic: every collective payload is reported to the recorders opened with :func:`record_traffic`, which is
how ``benchmarks/comm_volume.py`` measures what a training step really sends.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


# ---------------------------------------------------------------------------------------------- traffic log
@dataclass
class Collective:
    """One collective call as this rank saw it: the bytes it contributed and the bytes it got back."""

    op: str
    contributed: int
    received: int


_RECORDERS: list[list[Collective]] = []


@contextlib.contextmanager
def record_traffic() -> Iterator[list[Collective]]:
    """Collect a :class:`Collective` for every call made through this module inside the block."""
    log: list[Collective] = []
    _RECORDERS.append(log)
    try:
        yield log
    finally:
        _RECORDERS.remove(log)


def _record(op: str, contributed: int, received: int) -> None:
    for log in _RECORDERS:
        log.append(Collective(op, contributed, received))


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


# ------------------------------------------------------------------------------------------- plain reductions
def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks, without gradient (counts, statistics). Returns a new tensor."""
    out = tensor.detach().clone()
    if is_distributed():
        _record("all_reduce", _nbytes(out), _nbytes(out))
        dist.all_reduce(out)
    return out


def gather_objects(obj) -> list:
    """Every rank's picklable ``obj``, in rank order (small control data, such as resume states)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_sizes(n: int, device: torch.device | str = "cpu") -> list[int]:
    """The first-dimension size every rank holds, so that uneven batches can be gathered."""
    if not is_distributed():
        return [n]
    size = torch.tensor([n], dtype=torch.long, device=device)
    out = [torch.zeros_like(size) for _ in range(world_size())]
    _record("all_gather", _nbytes(size), _nbytes(size) * len(out))
    dist.all_gather(out, size)
    return [int(s) for s in out]


def _gather_padded(tensor: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """All-gather along dim 0 with per-rank sizes; pads to the largest size on the wire."""
    longest = max(sizes)
    padded = tensor
    if tensor.shape[0] < longest:
        pad = tensor.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))
        padded = torch.cat([tensor, pad])
    parts = [torch.empty_like(padded) for _ in sizes]
    _record("all_gather", _nbytes(padded), _nbytes(padded) * len(parts))
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


def all_gather_no_grad(tensor: torch.Tensor, sizes: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Concatenation over ranks along dim 0 (rank order), without gradient."""
    if not is_distributed():
        return tensor.detach()
    sizes = sizes if sizes is not None else gather_sizes(tensor.shape[0], tensor.device)
    return _gather_padded(tensor.detach(), sizes)


# --------------------------------------------------------------------------------------- gathers with gradient
class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
        ctx.sizes = sizes
        return _gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # Each rank's loss sends gradient to every rank's slice: sum them over ranks and keep our own slice.
        # A reduce-scatter does both and moves half the bytes of an all-reduce.
        sizes, longest = ctx.sizes, max(ctx.sizes)
        padded = grad.new_zeros((len(sizes) * longest, *grad.shape[1:]))
        start = 0
        for r, n in enumerate(sizes):
            padded[r * longest : r * longest + n] = grad[start : start + n]
            start += n
        out = grad.new_empty((longest, *grad.shape[1:]))
        _record("reduce_scatter", _nbytes(padded), _nbytes(out))
        _reduce_scatter(out, padded)
        return out[: sizes[rank()]], None


_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def all_gather_with_grad(tensor: torch.Tensor, sizes: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Concatenation over ranks along dim 0 whose backward returns each rank the summed gradient of its rows."""
    if not is_distributed():
        return tensor
    sizes = tuple(sizes) if sizes is not None else tuple(gather_sizes(tensor.shape[0], tensor.device))
    return _AllGatherWithGrad.apply(tensor, sizes)


class _ExchangeRows(torch.autograd.Function):
    """All-to-all of rows: forward sends ``rows[send_index]`` split by destination; backward returns the
    gradients of the received rows to their owners and scatter-adds them into the source rows."""

    @staticmethod
    def forward(ctx, rows, send_index, send_counts, recv_counts):
        ctx.save_for_backward(send_index)
        ctx.n_rows = rows.shape[0]
        ctx.counts = (send_counts, recv_counts)
        return _all_to_all_rows(rows.index_select(0, send_index), send_counts, recv_counts)

    @staticmethod
    def backward(ctx, grad):
        (send_index,) = ctx.saved_tensors
        send_counts, recv_counts = ctx.counts
        back = _all_to_all_rows(grad.contiguous(), recv_counts, send_counts)
        out = grad.new_zeros((ctx.n_rows, *grad.shape[1:]))
        out.index_add_(0, send_index, back)
        return out, None, None, None


def _all_to_all_rows(rows: torch.Tensor, send_counts: list[int], recv_counts: list[int]) -> torch.Tensor:
    out = rows.new_empty((sum(recv_counts), *rows.shape[1:]))
    row_bytes = math.prod(rows.shape[1:]) * rows.element_size()
    me = rank()
    _record("all_to_all", row_bytes * (sum(send_counts) - send_counts[me]), row_bytes * (sum(recv_counts) - recv_counts[me]))
    dist.all_to_all_single(out, rows.contiguous(), output_split_sizes=recv_counts, input_split_sizes=send_counts)
    return out


def exchange_rows(rows: torch.Tensor, send_index: torch.Tensor, send_counts: list[int], recv_counts: list[int]) -> torch.Tensor:
    """Send ``rows[send_index]`` to other ranks (``send_counts[r]`` consecutive rows to rank r) and receive
    ``recv_counts[r]`` rows from each rank r, in rank order. Differentiable in ``rows``."""
    if not is_distributed():
        return rows.index_select(0, send_index)
    return _ExchangeRows.apply(rows, send_index, send_counts, recv_counts)


def mean_share(local_sum: torch.Tensor, global_count: int | torch.Tensor) -> torch.Tensor:
    """This rank's share of a mean over every rank's items: ``world_size * local_sum / global_count``.

    Data-parallel training averages gradients over ranks, so the rank shares average to the global mean
    and their gradients to its gradient. With no item anywhere the share is an exact zero that keeps the
    graph (every parameter still receives a gradient, so no rank waits on a missing reduction).
    """
    count = global_count.clamp(min=1) if torch.is_tensor(global_count) else max(int(global_count), 1)
    return local_sum * world_size() / count
