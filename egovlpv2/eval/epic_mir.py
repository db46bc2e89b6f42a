"""EPIC-KITCHENS-100 multi-instance retrieval: every test clip against every unique caption.

Dual-mode cosine similarity [clips, captions], scored with the official mAP and nDCG against the
graded relevancy matrix, both directions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from egovlpv2.errors import MissingPathError
from egovlpv2.eval.encode import encode_texts, encode_video_batches
from egovlpv2.eval.eval_samples import EvalSamples, check_missing_samples, rank_batches
from egovlpv2.eval.metrics import mir_map, mir_ndcg
from egovlpv2.eval.ranking import Ranking
from egovlpv2.eval.runtime import EvalContext, current_context, evaluating
from egovlpv2.safe_pickle import load_pickled_array


def load_relevancy(path: str | Path) -> np.ndarray:
    """The pickled relevancy matrix [clips, captions] of the EK-100 retrieval annotations (array data only)."""
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"EK-100 relevancy matrix not found: {path}")
    return load_pickled_array(path, ndim=2).astype(np.float64)


def order_by_row(embeddings: torch.Tensor, rows: list[int], num_rows: int, shard_dir: str | Path) -> torch.Tensor:
    """Place clip embeddings at their relevancy rows; every row must be present exactly once."""
    present = set(rows)
    missing = sorted(set(range(num_rows)) - present)
    if missing or len(rows) != len(present) or max(rows) >= num_rows:
        raise RuntimeError(
            f"EK-100 MIR: {shard_dir} holds {len(rows)} clips ({len(present)} distinct rows) but the relevancy "
            f"matrix has {num_rows}; missing rows {missing[:10]}{' ...' if len(missing) > 10 else ''}: the shards "
            f"and the relevancy matrix are not of the same csv")
    out = torch.empty(num_rows, embeddings.shape[1])
    out[torch.as_tensor(rows)] = embeddings
    return out


def mir_results(similarity, relevancy) -> dict:
    return {"mAP": mir_map(similarity, relevancy), "nDCG": mir_ndcg(similarity, relevancy)}


def rank_epic_mir(model, shard_dir: str | Path, data_cfg, tokenizer, ctx: EvalContext | None = None,
                  batch_size: int = 8, limit: int | None = None, num_workers: int = 2,
                  allow_missing: bool = False, relevancy_path: str | Path | None = None) -> tuple[dict, Ranking]:
    """mAP and nDCG (V->T, T->V, avg) from eval shards of `make_shards.py --task epic_mir`, and every clip
    ranked for each caption (text -> video)."""
    from egovlpv2.data.eval_data import epic_mir_relevancy_path, load_epic_mir_captions

    ctx = ctx or current_context()
    missing = check_missing_samples(shard_dir, allow_missing or limit is not None)
    relevancy = load_relevancy(relevancy_path or epic_mir_relevancy_path(shard_dir))
    captions = load_epic_mir_captions(shard_dir)
    if len(captions) != relevancy.shape[1]:
        raise ValueError(f"EK-100 MIR: {len(captions)} unique captions but the relevancy matrix has "
                         f"{relevancy.shape[1]} columns")
    dataset = EvalSamples("epic_mir", shard_dir, data_cfg, limit=limit)
    with evaluating(model):
        video_emb, kept = encode_video_batches(model, rank_batches(dataset, ctx, batch_size, num_workers), ctx,
                                               "EK-100 clips", keep=("row",))
        text_emb = encode_texts(model, tokenizer, captions, ctx, desc="EK-100 captions")
    if missing or limit is not None:
        # Only the clips present: their rows of the matrix (figures not comparable to the paper's).
        relevancy = relevancy[kept["row"]]
        sample_of_clip = np.arange(len(kept["row"]))
    else:
        video_emb = order_by_row(video_emb, kept["row"], relevancy.shape[0], shard_dir)
        sample_of_clip = np.argsort(kept["row"])  # matrix row -> evaluation order
    similarity = (video_emb @ text_emb.T).numpy()
    result = mir_results(similarity, relevancy)
    result.update(num_clips=int(similarity.shape[0]), num_captions=int(similarity.shape[1]), missing=missing)
    ranking = Ranking("epic_mir", "cosine similarity", similarity.T, relevancy.T, dataset.refs, queries=captions,
                      candidate_samples=sample_of_clip)
    return result, ranking
