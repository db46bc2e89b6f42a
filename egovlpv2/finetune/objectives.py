"""Fine-tuning objectives: EK-100 MIR adaptive max-margin ranking and Charades-Ego symmetric InfoNCE.

Both take a batch already on the device, video normalised (the `LoopComponents.prepare` that `build_loop_components` in
finetune/components.py sets up), and return `(loss, parts)` like the pre-training objective.
With several ranks the embeddings are gathered with gradients (whose backward sums every rank's
gradient), every rank computes the same loss over the global batch, and the data-parallel gradient
average then equals the single-process gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from egovlpv2.dist.collectives import all_gather_no_grad, all_gather_with_grad


def adaptive_max_margin_loss(similarity: torch.Tensor, weight: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Max-margin ranking with a per-pair margin `weight[i] * margin` (EgoVLP's adaptive variant).

    similarity [N, N] (row i: clip i, column j: caption j; the diagonal holds the positive pairs);
    weight [N] the relevancy of each sampled caption to its clip. The loss averages
    relu(w_i m - (s_ii - s_ij)) and relu(w_i m - (s_ii - s_ji)) over all i != j.
    """
    n = similarity.shape[0]
    if n == 1:  # no negative to rank against
        return similarity.sum() * 0.0
    positive = similarity.diagonal().unsqueeze(1)
    w = weight.to(similarity.dtype).unsqueeze(1)
    off = ~torch.eye(n, dtype=torch.bool, device=similarity.device)
    rows = F.relu(w * margin - (positive - similarity))[off]
    cols = F.relu(w * margin - (positive - similarity.T))[off]
    return torch.cat([rows, cols]).mean()


def symmetric_infonce(similarity: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Cross-entropy over rows and over columns of similarity / temperature, diagonal = positives."""
    logits = similarity / temperature
    target = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)


def _dual_similarity(model, batch: dict) -> torch.Tensor:
    video = model.encode_video(batch["video"])
    text = model.encode_text(batch["input_ids"], batch["attention_mask"])
    return all_gather_with_grad(video) @ all_gather_with_grad(text).T


class EpicMirObjective:
    """EK-100 MIR fine-tuning: adaptive max-margin ranking on (clip, sampled caption, relevancy)."""

    def __init__(self, model, margin: float = 0.2):
        self.model, self.margin = model, margin

    def __call__(self, batch: dict, step: int | None = None):
        similarity = _dual_similarity(self.model, batch)
        weight = all_gather_no_grad(batch["relevancy"].to(similarity.dtype))
        loss = adaptive_max_margin_loss(similarity, weight, self.margin)
        return loss, {"mmr": loss.detach()}


class CharadesEgoObjective:
    """Charades-Ego fine-tuning: symmetric InfoNCE between clips and the names of their classes."""

    def __init__(self, model, temperature: float = 0.05):
        self.model, self.temperature = model, temperature

    def __call__(self, batch: dict, step: int | None = None):
        loss = symmetric_infonce(_dual_similarity(self.model, batch), self.temperature)
        return loss, {"infonce": loss.detach()}
