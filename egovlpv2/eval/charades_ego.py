"""Charades-Ego action recognition as retrieval: each video against all class-name prompts, mAP."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from egovlpv2.eval.encode import encode_texts, encode_video_batches
from egovlpv2.eval.eval_samples import EvalSamples, check_missing_samples, rank_batches
from egovlpv2.eval.metrics import charades_map
from egovlpv2.eval.ranking import Ranking
from egovlpv2.eval.runtime import EvalContext, current_context, evaluating


def class_scores(model, videos_emb: torch.Tensor, class_names: list[str], tokenizer, ctx: EvalContext) -> torch.Tensor:
    """Cosine similarity [videos, classes] between video embeddings and the class-name prompts."""
    text_emb = encode_texts(model, tokenizer, class_names, ctx, desc="Charades-Ego classes")
    return videos_emb @ text_emb.T


def rank_charades_ego(model, shard_dir: str | Path, data_cfg, tokenizer, ctx: EvalContext | None = None,
                      batch_size: int = 8, limit: int | None = None, num_workers: int = 2,
                      allow_missing: bool = False) -> tuple[dict, Ranking]:
    """Zero-shot (or fine-tuned) mAP from eval shards of `make_shards.py --task charades_ego`, and every video
    ranked for each class prompt."""
    from egovlpv2.data.eval_data import load_charades_classes

    ctx = ctx or current_context()
    missing = check_missing_samples(shard_dir, allow_missing)
    class_names = load_charades_classes(shard_dir)
    dataset = EvalSamples("charades_ego", shard_dir, data_cfg, limit=limit)
    with evaluating(model):
        video_emb, kept = encode_video_batches(model, rank_batches(dataset, ctx, batch_size, num_workers), ctx,
                                               "Charades-Ego videos", keep=("label",))
        scores = class_scores(model, video_emb, class_names, tokenizer, ctx)
    labels = torch.stack(kept["label"])
    if labels.shape[1] != len(class_names):
        raise ValueError(f"Charades-Ego labels have {labels.shape[1]} classes but the class list has {len(class_names)}")
    result = {"mAP": charades_map(scores, labels), "num_videos": int(labels.shape[0]),
              "num_classes": len(class_names), "missing": missing}
    ranking = Ranking("charades_ego", "cosine similarity", scores.T.numpy(), labels.T.double().numpy(), dataset.refs,
                      queries=class_names, candidate_samples=np.arange(labels.shape[0]))
    return result, ranking
