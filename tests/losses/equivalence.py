"""Shared pieces of the gradient-equivalence tests: a global batch, its split over ranks, and the gradients
of one objective call as data-parallel training would average them."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from egovlpv2.dist import collectives as C
from egovlpv2.losses.mlm import TokenizerInfo
from egovlpv2.losses.objective import LossConfig, PretrainObjective

SPECIALS = (0, 1, 2, 3, 4)  # <s> <pad> </s> <unk> <mask>, the project tokenizer's ids


def tokenizer_info(vocab_size: int) -> TokenizerInfo:
    return TokenizerInfo(vocab_size, mask_token_id=4, pad_token_id=1, special_token_ids=SPECIALS)


def global_batch(n: int, frames: int, size: int, vocab: int, length: int = 8, seed: int = 1,
                 dtype=torch.float64, specials_only: Sequence[int] = ()) -> dict:
    """``n`` pairs with tags dense enough for rows with several positives; rows ``specials_only``
    carry no maskable token at all."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (n, length), generator=g)
    lengths = torch.randint(4, length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    ids[:, 0] = 0
    ids[torch.arange(n), lengths - 1] = 2
    ids[mask == 0] = 1
    for r in specials_only:
        ids[r, 1:lengths[r] - 1] = 3
    return dict(video=torch.randn(n, frames, 3, size, size, generator=g, dtype=dtype),
                input_ids=ids, attention_mask=mask,
                verb=(torch.rand(n, 4, generator=g) < 0.35).to(dtype),
                noun=(torch.rand(n, 5, generator=g) < 0.35).to(dtype))


def rows_of(batch: dict, start: int, stop: int) -> dict:
    return {k: v[start:stop] for k, v in batch.items()}


def averaged_gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter's gradient averaged over ranks, as data-parallel training reduces it."""
    out = {}
    for name, p in model.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        out[name] = C.all_reduce_sum(g) / C.world_size()
    return out


def objective_step(make_model: Callable[[], torch.nn.Module], batch: dict, sizes: Sequence[int], cfg: LossConfig,
                   vocab: int, step: int = 3):
    """One objective call on this rank's rows of ``batch`` and backward; returns (parts averaged over
    ranks, averaged gradients, the collectives of the loss's forward and backward as (op, bytes sent))."""
    model = make_model()
    start = sum(sizes[: C.rank()])
    local = rows_of(batch, start, start + sizes[C.rank()])
    with C.record_traffic() as log:
        loss, parts = PretrainObjective(model, cfg, tokenizer_info(vocab))(local, step=step)
        loss.backward()
    parts = {k: (C.all_reduce_sum(v.reshape(1)) / C.world_size()).item() for k, v in parts.items()}
    parts["loss"] = (C.all_reduce_sum(loss.detach().reshape(1)) / C.world_size()).item()
    return parts, averaged_gradients(model), [(c.op, c.contributed) for c in log]
