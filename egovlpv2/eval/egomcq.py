"""EgoMCQ: pick the clip (of 5) that matches a narration, by dual, VTM and ensemble scores.

Dual score = cosine(text, clip) of the dual encoders; VTM score = P(match) of the fused path;
ensemble = their sum (the paper's EgoMCQ protocol, EgoVLPv2, ICCV 2023). Accuracy is split into inter-video (type 1) and intra-video (type 2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from egovlpv2.data.transforms import prepare_video
from egovlpv2.eval.encode import batch_count
from egovlpv2.eval.eval_samples import NUM_CHOICES, EvalSamples, check_missing_samples, rank_batches
from egovlpv2.eval.metrics import egomcq_accuracy
from egovlpv2.eval.ranking import Ranking
from egovlpv2.eval.runtime import EvalContext, current_context, evaluating, gather_rows, progress

SCORE_KINDS = ("dual", "vtm", "ensemble")


@torch.no_grad()
def score_questions(model, questions: list[dict], ctx: EvalContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual and VTM scores, each [Q, 5], for a batch of EgoMCQ samples (reader format)."""
    q = len(questions)
    video = prepare_video(torch.stack([s["video"] for s in questions]), model, ctx.device)  # [Q, 5, T, 3, H, W]
    if video.shape[1] != NUM_CHOICES:
        raise ValueError(f"EgoMCQ samples must hold {NUM_CHOICES} clips, got {video.shape[1]}")
    video = video.flatten(0, 1)
    ids = torch.stack([s["input_ids"] for s in questions]).to(ctx.device)
    mask = torch.stack([s["attention_mask"] for s in questions]).to(ctx.device)
    with ctx.autocast():
        video_emb = model.encode_video(video).float().view(q, NUM_CHOICES, -1)
        text_emb = model.encode_text(ids, mask).float()
        dual = torch.einsum("qd,qcd->qc", text_emb, video_emb)
        ids5, mask5 = ids.repeat_interleave(NUM_CHOICES, 0), mask.repeat_interleave(NUM_CHOICES, 0)
        vtm = model.match_score(video, ids5, mask5).float().view(q, NUM_CHOICES)
    return dual, vtm


def accuracies(dual: torch.Tensor, vtm: torch.Tensor, answers, types) -> dict[str, dict[str, float]]:
    """{"dual"|"vtm"|"ensemble": {"inter", "intra"}} in percent."""
    scores = {"dual": dual, "vtm": vtm, "ensemble": dual + vtm}
    return {kind: egomcq_accuracy(scores[kind], answers, types) for kind in SCORE_KINDS}


def score_egomcq_batches(model, batches: Iterable[list], ctx: EvalContext | None = None,
                         ) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Score this rank's batches of `(index, sample)`; each question is scored by exactly one rank.

    Returns ({"dual"|"vtm"|"ensemble": {"inter", "intra"}, "num_questions": {"inter", "intra"}},
    ensemble scores [Q, 5], answers [Q]), questions in index order, on every rank.
    """
    ctx = ctx or current_context()
    indices, rows = [], []
    with evaluating(model):
        for chunk in progress(batches, ctx, "EgoMCQ", batch_count(batches)):
            dual, vtm = score_questions(model, [s for _, s in chunk], ctx)
            meta = torch.tensor([[s["answer"], s["type"]] for _, s in chunk], dtype=torch.float32)
            rows += list(torch.cat([dual.cpu(), vtm.cpu(), meta], dim=1))
            indices += [i for i, _ in chunk]
    table = gather_rows(indices, rows, ctx, "EgoMCQ questions")
    dual, vtm = table[:, :NUM_CHOICES], table[:, NUM_CHOICES:2 * NUM_CHOICES]
    answers, types = table[:, -2].long(), table[:, -1].long()
    result = accuracies(dual, vtm, answers, types)
    result["num_questions"] = {"inter": int((types == 1).sum()), "intra": int((types == 2).sum())}
    return result, dual + vtm, answers


def rank_egomcq(model, shard_dir: str | Path, data_cfg, tokenizer, ctx: EvalContext | None = None,
                batch_size: int = 2, limit: int | None = None, num_workers: int = 2,
                allow_missing: bool = False) -> tuple[dict, Ranking]:
    """EgoMCQ accuracy from eval shards written by `egovlpv2-make-shards --task egomcq`, and each
    question's five clips ranked by the ensemble score."""
    ctx = ctx or current_context()
    missing = check_missing_samples(shard_dir, allow_missing)
    dataset = EvalSamples("egomcq", shard_dir, data_cfg, tokenizer, limit)
    result, ensemble, answers = score_egomcq_batches(model, rank_batches(dataset, ctx, batch_size, num_workers), ctx)
    result["missing"] = missing
    correct = torch.nn.functional.one_hot(answers, NUM_CHOICES).numpy().astype(np.float64)
    ranking = Ranking("egomcq", "ensemble score", ensemble.numpy(), correct, dataset.refs, queries=None,
                      candidate_samples=None)
    return result, ranking

