"""Masked language modelling in fusion mode: masking, and a loss reduced by sums and counts.

Masking follows BERT/RoBERTa: 15% of the non-special tokens are selected; of those 80% become the mask
token, 10% a random non-special token, 10% stay. Special and padding tokens are never selected. The loss is
the cross-entropy over selected tokens of the global batch: each rank computes its local sum, the token
count is summed over ranks, and no vocabulary-size logits ever leave the rank.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from egovlpv2.dist import collectives as C
from egovlpv2.losses.seeding import per_sample_uniform

IGNORE = -100
MLM_STREAM = 1


@dataclass(frozen=True)
class TokenizerInfo:
    """The token ids MLM needs. Build it from a Hugging Face tokenizer with :meth:`from_tokenizer`."""

    vocab_size: int
    mask_token_id: int
    pad_token_id: int
    special_token_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        ids = set(self.special_token_ids) | {self.mask_token_id, self.pad_token_id}
        if not all(0 <= i < self.vocab_size for i in ids):
            raise ValueError(f"special token ids {sorted(ids)} must lie in [0, {self.vocab_size})")
        if len(ids) >= self.vocab_size:
            raise ValueError("the vocabulary has no ordinary token to draw random replacements from")

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "TokenizerInfo":
        if tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("MLM needs a tokenizer with a mask token and a pad token")
        return cls(len(tokenizer), tokenizer.mask_token_id, tokenizer.pad_token_id,
                   tuple(sorted(set(tokenizer.all_special_ids))))

    def special_ids(self, device=None) -> torch.Tensor:
        return torch.tensor(sorted(set(self.special_token_ids) | {self.mask_token_id, self.pad_token_id}),
                            device=device)

    def ordinary_ids(self, device=None) -> torch.Tensor:
        ids = torch.arange(self.vocab_size, device=device)
        return ids[~torch.isin(ids, self.special_ids(device))]


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, tok: TokenizerInfo,
                global_indices: Sequence[int], seed: int, step: int, probability: float = 0.15,
                mask_fraction: float = 0.8, random_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(masked_ids, labels)``; ``labels`` is the original id at selected positions, else -100.

    Row k is drawn from the generator of global sample ``global_indices[k]`` (see ``seeding``), so the
    masks do not depend on how the batch is split over ranks.
    """
    n, length = input_ids.shape
    u = per_sample_uniform(seed, step, MLM_STREAM, global_indices, 3 * length).view(n, 3, length)
    u = u.to(input_ids.device)
    maskable = attention_mask.bool() & ~torch.isin(input_ids, tok.special_ids(input_ids.device))
    selected = maskable & (u[:, 0] < probability)
    to_mask = selected & (u[:, 1] < mask_fraction)
    to_random = selected & (u[:, 1] >= mask_fraction) & (u[:, 1] < mask_fraction + random_fraction)
    ordinary = tok.ordinary_ids(input_ids.device)
    random_ids = ordinary[(u[:, 2] * len(ordinary)).long().clamp(max=len(ordinary) - 1)]
    masked = input_ids.masked_fill(to_mask, tok.mask_token_id)
    masked = torch.where(to_random, random_ids, masked)
    labels = input_ids.masked_fill(~selected, IGNORE)
    return masked, labels


@dataclass
class MLMOutput:
    loss: torch.Tensor       # this rank's share of the global mean over masked tokens
    accuracy: torch.Tensor   # detached, over the global batch's masked tokens
    masked_tokens: int       # over the global batch


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor, global_count: int | None = None) -> MLMOutput:
    """``logits`` ``[K, V]`` for the K selected tokens of this rank, ``labels`` ``[K]`` (K may be 0).

    ``global_count``: the selected tokens of the whole global batch, when the caller knows it (gradient
    caching spreads one batch over several calls; the accuracy is then this call's own). Otherwise the
    count and the accuracy are reduced over ranks here, with one all-reduce."""
    # fp32 at least: bf16 log-softmax over the vocabulary loses too much.
    local_sum = F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), labels, reduction="sum")
    with torch.no_grad():
        stats = torch.stack([torch.tensor(float(labels.numel()), device=logits.device),
                             (logits.argmax(-1) == labels).sum().float()])
        if global_count is None:
            stats = C.all_reduce_sum(stats)
            global_count = int(stats[0])
    return MLMOutput(C.mean_share(local_sum, global_count), stats[1] / stats[0].clamp(min=1), global_count)
