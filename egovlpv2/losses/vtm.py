"""Video-text matching with hard negatives drawn from the contrastive similarities.

Every pair of the batch fills one VTM slot. Half the slots (those whose global index has the parity of
the step) keep their pair as a positive; the others become negatives: with probability 0.5 the video is
replaced, otherwise the text, by one drawn from softmax(similarity / 0.05) over the candidates that are
not EgoNCE positives of the slot's pair. A slot with no candidate at all stays positive.

The candidate pool is either this rank's pairs (``local``) or the global batch (``global``). In the global
pool a chosen negative may live on another rank: only the chosen rows of the lower-layer states move,
through one all-to-all per state tensor, and gradients flow back to their owners the same way. Raw videos
never travel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F

from egovlpv2.dist import collectives as C
from egovlpv2.losses import batch_ops
from egovlpv2.losses.seeding import per_sample_uniform

NegativePool = Literal["local", "global"]
VTM_STREAM = 2


@dataclass
class VTMPlan:
    video_source: torch.Tensor  # [n] long: global index of each slot's video
    text_source: torch.Tensor   # [n] long: global index of each slot's text
    labels: torch.Tensor        # [n] long: 1 = match


def draw_from_cdf(weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Column index per row drawn from unnormalised non-negative ``weights`` with uniforms ``u`` in [0, 1)."""
    cdf = weights.cumsum(1)
    target = (u * cdf[:, -1]).unsqueeze(1)
    # First column whose cumulative weight exceeds the target: always one with non-zero weight.
    return torch.searchsorted(cdf, target, right=True).squeeze(1).clamp(max=weights.shape[1] - 1)


def plan_vtm(sim_v2t: torch.Tensor, sim_t2v: torch.Tensor, positives: torch.Tensor, sizes: Sequence[int],
             seed: int, step: int, pool: NegativePool = "global", temperature: float = 0.05,
             first_row: int | None = None) -> VTMPlan:
    """Choose the VTM slots of this rank's pairs from the detached EgoNCE similarities ``[n, N]``.

    ``sizes`` gives the rows each rank owns (columns of the similarities in rank order); the slots are
    rows ``first_row ..`` (default: this rank's first row) of that global numbering.
    """
    n, total = positives.shape
    device = positives.device
    own_start = sum(sizes[: C.rank()])
    rows = torch.arange(n, device=device) + (own_start if first_row is None else first_row)
    u = per_sample_uniform(seed, step, VTM_STREAM, rows.tolist(), 2).to(device)
    allowed = ~positives
    if pool == "local":
        cols = torch.arange(total, device=device)
        allowed &= ((cols >= own_start) & (cols < own_start + sizes[C.rank()]))[None, :]
    elif pool != "global":
        raise ValueError(f"unknown VTM negative pool {pool!r}; use local or global")
    replace_video = u[:, 0] < 0.5
    # Text kept -> pick a video by the text's row of similarities, and the other way round.
    sim = torch.where(replace_video[:, None], sim_t2v, sim_v2t).double()
    weights = torch.softmax((sim / temperature).masked_fill(~allowed, float("-inf")), dim=1).nan_to_num(0.0)
    choice = draw_from_cdf(weights, u[:, 1])

    negative = ((rows + step) % 2 == 1) & allowed.any(1)
    video_source = torch.where(negative & replace_video, choice, rows)
    text_source = torch.where(negative & ~replace_video, choice, rows)
    return VTMPlan(video_source, text_source, (~negative).long())


def owners(indices: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """The rank holding each global row index when rank r holds ``sizes[r]`` consecutive rows."""
    ends = torch.tensor(list(sizes), device=indices.device).cumsum(0)
    return torch.bucketize(indices, ends, right=True)


def gather_plans(plan: VTMPlan, slots_per_rank: Sequence[int]) -> list[torch.Tensor]:
    """Every rank's ``[n_r, 2]`` (video source, text source): a few integers per slot, so that each
    rank can list what it must send without a handshake."""
    both = torch.stack([plan.video_source, plan.text_source], 1)
    return list(C.all_gather_no_grad(both, slots_per_rank).split(list(slots_per_rank)))


def rows_requested_from(rank: int, plans: list[torch.Tensor], sizes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted global indices of ``rank``'s videos and texts that any rank's slots use."""
    out = []
    for column in (0, 1):
        wanted = torch.unique(torch.cat([p[:, column] for p in plans]))
        out.append(wanted[owners(wanted, sizes) == rank])
    return out[0], out[1]


def _fetch(states: Any, held: torch.Tensor, sources: torch.Tensor, plans_column: list[torch.Tensor],
           sizes: Sequence[int]):
    """Rows ``sources`` (global indices) of states spread over ranks, as ``(pool, positions)``.

    ``states`` holds this rank's rows with global indices ``held`` (sorted); ``pool`` is ``states``
    followed by the remote rows this rank needs, and ``positions`` index it.
    """
    me = C.rank()
    owner = owners(sources, sizes)
    send, send_counts = [], []
    for r, column in enumerate(plans_column):
        wanted = torch.unique(column) if r != me else column.new_empty(0)
        mine = wanted[owners(wanted, sizes) == me]
        send.append(torch.searchsorted(held, mine))
        send_counts.append(mine.numel())
    remote = torch.unique(sources[owner != me])  # sorted, hence grouped by owner in rank order
    remote_owner = owners(remote, sizes)
    recv_counts = [int((remote_owner == r).sum()) for r in range(len(sizes))]
    received = batch_ops.exchange(states, torch.cat(send), send_counts, recv_counts)
    pool = batch_ops.cat_rows([states, received])
    positions = torch.where(owner == me, torch.searchsorted(held, sources),
                            held.numel() + torch.searchsorted(remote, sources))
    return pool, positions


def vtm_inputs(video_states: Any, text_states: Any, plan: VTMPlan, sizes: Sequence[int],
               pool: NegativePool = "global", held: tuple[torch.Tensor, torch.Tensor] | None = None,
               plans: list[torch.Tensor] | None = None) -> tuple[Any, Any]:
    """The lower-layer states of every slot's video and text, fetched from other ranks where needed.

    ``sizes`` gives the rows each rank owns. By default this rank's states are its own rows in order; a
    caller holding other rows (the gradient cache) passes their sorted global indices as ``held``
    (videos, texts) and the already gathered ``plans``.
    """
    offset = sum(sizes[: C.rank()])
    if held is None:
        mine = torch.arange(offset, offset + sizes[C.rank()], device=plan.labels.device)
        held = (mine, mine)
    if pool == "local" or len(sizes) == 1:
        return (batch_ops.index_rows(video_states, torch.searchsorted(held[0], plan.video_source)),
                batch_ops.index_rows(text_states, torch.searchsorted(held[1], plan.text_source)))
    plans = plans if plans is not None else gather_plans(plan, sizes)
    video_pool, video_pos = _fetch(video_states, held[0], plan.video_source, [p[:, 0] for p in plans], sizes)
    text_pool, text_pos = _fetch(text_states, held[1], plan.text_source, [p[:, 1] for p in plans], sizes)
    return batch_ops.index_rows(video_pool, video_pos), batch_ops.index_rows(text_pool, text_pos)


@dataclass
class VTMOutput:
    loss: torch.Tensor      # this rank's share of the global mean over slots
    accuracy: torch.Tensor  # detached, over this rank's slots


def vtm_loss(logits: torch.Tensor, labels: torch.Tensor, global_slots: int) -> VTMOutput:
    """2-way cross-entropy of ``logits`` ``[n, 2]`` (column 1 = match) against ``labels``, as this rank's
    share of the mean over the ``global_slots`` slots of the global batch."""
    local_sum = F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), labels, reduction="sum")
    accuracy = (logits.argmax(1) == labels).float().mean().detach()
    return VTMOutput(C.mean_share(local_sum, global_slots), accuracy)
