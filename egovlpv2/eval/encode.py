"""Batched, rank-split encoding of videos and texts for the evaluators."""
from __future__ import annotations

from itertools import islice
from typing import Iterable, Iterator, Sequence, TypeVar

import torch

from egovlpv2.data.transforms import prepare_video
from egovlpv2.eval.runtime import EvalContext, gather_rows, my_share, progress

T = TypeVar("T")

# Caption length cap for captions and class names (longer than pre-training's 15: EK-100 captions run long).
DEFAULT_TEXT_MAX_LEN = 64


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def tokenize(tokenizer, texts: Sequence[str], max_length: int, device: torch.device,
             padding: str = "longest") -> tuple[torch.Tensor, torch.Tensor]:
    """``padding="max_length"`` pads every text to ``max_length`` tokens (the EgoNLQ feature files)."""
    enc = tokenizer(list(texts), padding=padding, truncation=True, max_length=max_length, return_tensors="pt")
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


@torch.no_grad()
def encode_texts(
    model, tokenizer, texts: Sequence[str], ctx: EvalContext, batch_size: int = 256,
    max_length: int = DEFAULT_TEXT_MAX_LEN, desc: str = "texts",
) -> torch.Tensor:
    """Dual-mode embeddings of `texts`, [N, D] in order, each text encoded once across ranks."""
    indices, rows = [], []
    share = progress(batched(my_share(texts, ctx), batch_size), ctx, desc)
    for chunk in share:
        ids, mask = tokenize(tokenizer, [t for _, t in chunk], max_length, ctx.device)
        with ctx.autocast():
            emb = model.encode_text(ids, mask).float()
        indices += [i for i, _ in chunk]
        rows += list(emb.cpu())
    return gather_rows(indices, rows, ctx, desc)


@torch.no_grad()
def encode_video_batches(model, batches: Iterable[list], ctx: EvalContext, desc: str, keep: Sequence[str] = (),
                         ) -> tuple[torch.Tensor, dict[str, list]]:
    """Dual-mode embeddings of every sample's `video`, [N, D] in global index order, each scored once.

    `batches`: this rank's lists of `(index, sample)` (see `eval_samples.rank_batches`). `keep` names
    per-sample fields to collect alongside (gathered in the same order on every rank).
    """
    indices, rows, kept = [], [], {k: [] for k in keep}
    for chunk in progress(batches, ctx, desc, batch_count(batches)):
        video = prepare_video(torch.stack([s["video"] for _, s in chunk]), model, ctx.device)
        with ctx.autocast():
            emb = model.encode_video(video).float()
        indices += [i for i, _ in chunk]
        rows += list(emb.cpu())
        for k in keep:
            kept[k] += [s[k] for _, s in chunk]
    embeddings = gather_rows(indices, rows, ctx, desc)
    return embeddings, gather_fields(indices, kept, ctx)


def batch_count(batches) -> int | None:
    try:
        return len(batches)
    except TypeError:
        return None


def gather_fields(indices: list[int], fields: dict[str, list], ctx: EvalContext) -> dict[str, list]:
    """Per-sample Python values from every rank, in global index order."""
    if not fields:
        return {}
    keep = [k for k, i in enumerate(indices) if i >= 0]
    local = ([indices[k] for k in keep], {name: [values[k] for k in keep] for name, values in fields.items()})
    if ctx.world_size > 1:
        import torch.distributed as dist

        shards: list = [None] * ctx.world_size
        dist.all_gather_object(shards, local)
    else:
        shards = [local]
    order = sorted((i, r, j) for r, (idx, _) in enumerate(shards) for j, i in enumerate(idx))
    return {k: [shards[r][1][k][j] for _, r, j in order] for k in fields}
