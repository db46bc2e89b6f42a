"""EgoNCE: the action-aware contrastive loss of EgoVLP / EgoVLPv2, over the global batch.

Positives of pair i are i itself and, with the ``action`` rule, every pair j of the *global* batch that
shares at least one verb class and at least one noun class with i. Scene-aware negatives need nothing
here: the partner clips are ordinary pairs of the batch (B anchors + B partners = 2B pairs).

Per row the loss is ``-log(sum over positives of softmax(sim / T))``, taken video->text and text->video and
summed (each direction averaged over the global batch). Each rank gathers the normalised embeddings (with
gradients) and the tags, and computes only its own rows; its returned loss is its share of the global mean
(see :func:`egovlpv2.dist.collectives.mean_share`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F

from egovlpv2.dist import collectives as C

PositiveRule = Literal["action", "verb", "noun", "infonce"]


def positive_mask(verb_rows: torch.Tensor, noun_rows: torch.Tensor, verb_cols: torch.Tensor,
                  noun_cols: torch.Tensor, row_offset: int, rule: PositiveRule = "action") -> torch.Tensor:
    """Boolean ``[rows, cols]``: row i (global index ``row_offset + i``) against every column j."""
    n_rows, n_cols = verb_rows.shape[0], verb_cols.shape[0]
    cols = torch.arange(n_cols, device=verb_rows.device)
    rows = torch.arange(n_rows, device=verb_rows.device) + row_offset
    same = rows[:, None] == cols[None, :]
    if rule == "infonce":
        return same
    shares_verb = (verb_rows.float() @ verb_cols.float().T) > 0
    shares_noun = (noun_rows.float() @ noun_cols.float().T) > 0
    if rule == "action":
        return same | (shares_verb & shares_noun)
    if rule == "verb":
        return same | shares_verb
    if rule == "noun":
        return same | shares_noun
    raise ValueError(f"unknown positive rule {rule!r}; use action, verb, noun or infonce")


def positive_log_likelihood(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Per row ``log(sum over positives of softmax(logits))`` (every row has at least one positive)."""
    return torch.logsumexp(logits.masked_fill(~positives, float("-inf")), dim=1) - torch.logsumexp(logits, dim=1)


@dataclass
class EgoNCEOutput:
    loss: torch.Tensor                # this rank's share of the global loss (mean over ranks = the loss)
    sim_v2t: torch.Tensor             # [n, N] detached cosine similarity: local videos x global texts
    sim_t2v: torch.Tensor             # [n, N] detached: local texts x global videos
    positives: torch.Tensor           # [n, N] bool
    sizes: list[int]                  # pairs per rank
    accuracy: torch.Tensor            # detached: fraction of local rows (both directions) whose top column is a positive

    @property
    def offset(self) -> int:
        return sum(self.sizes[: C.rank()])


def egonce(video_embed: torch.Tensor, text_embed: torch.Tensor, verb: torch.Tensor, noun: torch.Tensor,
           temperature: float = 0.05, rule: PositiveRule = "action",
           sizes: Optional[Sequence[int]] = None) -> EgoNCEOutput:
    """EgoNCE on this rank's pairs against the global batch. Embeddings are ``[n, D]``, not yet normalised;
    ``verb``/``noun`` are multi-hot ``[n, V]``/``[n, K]``. ``sizes`` (pairs per rank) saves one collective."""
    sizes = list(sizes) if sizes is not None else C.gather_sizes(video_embed.shape[0], video_embed.device)
    v = F.normalize(video_embed, dim=-1, eps=1e-8)
    t = F.normalize(text_embed, dim=-1, eps=1e-8)
    v_all = C.all_gather_with_grad(v, sizes)
    t_all = C.all_gather_with_grad(t, sizes)
    # One gather for both tag sets, as bytes: multi-hot tags only need "present or not".
    tags = torch.cat([verb, noun], dim=1) > 0
    tags_all = C.all_gather_no_grad(tags.to(torch.uint8), sizes).bool()
    n_verbs = verb.shape[1]
    offset = sum(sizes[: C.rank()])
    positives = positive_mask(verb, noun, tags_all[:, :n_verbs], tags_all[:, n_verbs:], offset, rule)

    sim_v2t = v @ t_all.T
    sim_t2v = t @ v_all.T
    ll = positive_log_likelihood(sim_v2t / temperature, positives) + positive_log_likelihood(sim_t2v / temperature, positives)
    loss = C.mean_share(-ll.sum(), sum(sizes))
    with torch.no_grad():
        hit = positives.gather(1, sim_v2t.argmax(1, keepdim=True)).float().mean() \
            + positives.gather(1, sim_t2v.argmax(1, keepdim=True)).float().mean()
    return EgoNCEOutput(loss, sim_v2t.detach(), sim_t2v.detach(), positives, sizes, hit / 2)
