"""Charades-Ego action recognition as retrieval: each video against all class-name prompts, mAP."""
from __future__ import annotations

from pathlib import Path

import torch

from egovlpv2.eval.encode import encode_texts, encode_video_stream
from egovlpv2.eval.metrics import charades_map
from egovlpv2.eval.runtime import EvalContext, current_context


def class_scores(model, videos_emb: torch.Tensor, class_names: list[str], tokenizer, ctx: EvalContext) -> torch.Tensor:
    """Cosine similarity [videos, classes] between video embeddings and the class-name prompts."""
    text_emb = encode_texts(model, tokenizer, class_names, ctx, desc="Charades-Ego classes")
    return videos_emb @ text_emb.T


def evaluate_charades_ego(model, shard_dir: str | Path, data_cfg, tokenizer, ctx: EvalContext | None = None,
                          batch_size: int = 8, limit: int | None = None) -> dict:
    """Zero-shot (or fine-tuned) mAP from eval shards of `make_shards.py --task charades_ego`."""
    from egovlpv2.data.eval_data import iter_charades_ego, load_charades_classes

    ctx = ctx or current_context()
    class_names = load_charades_classes(shard_dir)
    was_training = model.training
    model.eval()
    try:
        samples = iter_charades_ego(shard_dir, data_cfg, limit=limit)
        video_emb, kept = encode_video_stream(model, samples, ctx, batch_size, "Charades-Ego videos",
                                              total=limit, keep=("label",))
        scores = class_scores(model, video_emb, class_names, tokenizer, ctx)
    finally:
        model.train(was_training)
    labels = torch.stack([torch.as_tensor(label) for label in kept["label"]])
    if labels.shape[1] != len(class_names):
        raise ValueError(f"Charades-Ego labels have {labels.shape[1]} classes but the class list has {len(class_names)}")
    return {"mAP": charades_map(scores, labels), "num_videos": int(labels.shape[0]),
            "num_classes": len(class_names)}
