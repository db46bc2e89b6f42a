"""Downstream metrics: EgoMCQ accuracy, EPIC-KITCHENS-100 MIR mAP / nDCG, Charades-Ego mAP.

All functions take numpy arrays or torch tensors and return percentages (0-100) as Python floats.

Ranking ties are broken by column order (a stable sort): among equal scores the lower index ranks
first, so results never depend on the sort algorithm. Rows (or classes) that have nothing to retrieve
are left out of the mean, as the metric is undefined for them; if no row is left, a ValueError says so.
"""
from __future__ import annotations

import numpy as np

# Rows per chunk when ranking a similarity matrix: bounds memory on EK-100 (9668 x 3842).
_ROW_CHUNK = 1024


def _as_array(x, name: str, ndim: int, dtype=np.float64) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


def _check_same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {a.shape} and {b.shape}")


def _ranked(scores: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`values` of each row reordered by descending `scores` (ties: lower column first)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(values, order, axis=1)


def _mean_over_defined(per_row: np.ndarray, defined: np.ndarray, what: str) -> float:
    if not defined.any():
        raise ValueError(f"{what} is undefined: no row has anything relevant")
    return float(per_row[defined].mean() * 100.0)


def egomcq_accuracy(scores, answers, types) -> dict[str, float]:
    """Accuracy of argmax over the 5 choices, split into inter-video (type 1) and intra-video (type 2).

    A type with no question gives NaN (there is nothing to measure). Ties pick the first choice.
    """
    scores = _as_array(scores, "scores", 2)
    answers = _as_array(answers, "answers", 1, np.int64)
    types = _as_array(types, "types", 1, np.int64)
    if not len(scores) == len(answers) == len(types):
        raise ValueError(f"scores, answers, types disagree in length: {len(scores)}, {len(answers)}, {len(types)}")
    unknown = set(np.unique(types).tolist()) - {1, 2}
    if unknown:
        raise ValueError(f"types must be 1 (inter) or 2 (intra), found {sorted(unknown)}")
    correct = scores.argmax(axis=1) == answers
    result = {}
    for name, code in (("inter", 1), ("intra", 2)):
        mask = types == code
        result[name] = float(correct[mask].mean() * 100.0) if mask.any() else float("nan")
    return result


def _map_rows(similarity: np.ndarray, relevancy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row AP with the official EK-100 definition, and which rows have an entry equal to 1."""
    ap = np.zeros(len(similarity))
    n_full = np.zeros(len(similarity), dtype=np.int64)
    ranks = np.arange(1, similarity.shape[1] + 1, dtype=np.float64)
    for start in range(0, len(similarity), _ROW_CHUNK):
        rows = slice(start, start + _ROW_CHUNK)
        rel = _ranked(similarity[rows], relevancy[rows])
        full = rel == 1
        # p(k) counts the graded relevancy of the top k, not the fully relevant items (official quirk).
        precision = np.cumsum(rel, axis=1) / ranks
        n_full[rows] = full.sum(axis=1)
        ap[rows] = np.where(full, precision, 0.0).sum(axis=1) / np.maximum(n_full[rows], 1)
    return ap, n_full > 0


def _ndcg_rows(similarity: np.ndarray, relevancy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row graded nDCG over the first K_i ranks (K_i = entries > 0), and which rows have K_i > 0."""
    ndcg = np.zeros(len(similarity))
    k_count = (relevancy > 0).sum(axis=1)
    discount = 1.0 / np.log2(np.arange(2, similarity.shape[1] + 2, dtype=np.float64))
    for start in range(0, len(similarity), _ROW_CHUNK):
        rows = slice(start, start + _ROW_CHUNK)
        within_k = np.arange(similarity.shape[1])[None, :] < k_count[rows, None]
        dcg = (_ranked(similarity[rows], relevancy[rows]) * discount * within_k).sum(axis=1)
        ideal = (-np.sort(-relevancy[rows], axis=1) * discount * within_k).sum(axis=1)
        ndcg[rows] = dcg / np.where(ideal > 0, ideal, 1.0)
    return ndcg, k_count > 0


def _both_directions(row_metric, similarity, relevancy, what: str) -> dict[str, float]:
    similarity = _as_array(similarity, "similarity", 2)
    relevancy = _as_array(relevancy, "relevancy", 2)
    _check_same_shape(similarity, relevancy, "similarity and relevancy")
    v2t = _mean_over_defined(*row_metric(similarity, relevancy), f"{what} video->text")
    t2v = _mean_over_defined(*row_metric(similarity.T.copy(), relevancy.T.copy()), f"{what} text->video")
    return {"v2t": v2t, "t2v": t2v, "avg": (v2t + t2v) / 2.0}


def mir_map(similarity, relevancy) -> dict[str, float]:
    """EK-100 MIR mAP, official definition. similarity, relevancy: [clips, unique captions].

    Rank each row by similarity; at each rank k whose relevancy is exactly 1 take
    p(k) = (sum of the graded relevancy of the top k) / k; AP = sum of those p(k) / (entries == 1).
    Text->video is the same on the transposes. Rows without an entry equal to 1 are left out.
    """
    return _both_directions(_map_rows, similarity, relevancy, "mAP")


def mir_ndcg(similarity, relevancy) -> dict[str, float]:
    """EK-100 MIR nDCG: DCG of relevancy / log2(rank + 1) over the first K_i ranks of each row
    (K_i = number of entries > 0), divided by the DCG of the ideal order. Rows with K_i = 0 are left out.
    """
    return _both_directions(_ndcg_rows, similarity, relevancy, "nDCG")


def charades_map(scores, labels) -> float:
    """Charades(-Ego) mAP over classes. scores, labels: [videos, classes], labels multi-hot.

    Per class, videos are ranked by score and AP is the mean precision at each true positive.
    Classes without a positive are left out. As in the official Charades evaluation, videos
    with no label at all are ranked last for every class.
    """
    scores = _as_array(scores, "scores", 2)
    labels = _as_array(labels, "labels", 2)
    _check_same_shape(scores, labels, "scores and labels")
    scores = np.where(labels.sum(axis=1, keepdims=True) > 0, scores, -np.inf)
    # Classes become rows so the ranking helper applies.
    positive = _ranked(scores.T, labels.T) > 0
    hits = np.cumsum(positive, axis=1)
    precision = hits / np.arange(1, positive.shape[1] + 1)
    n_pos = positive.sum(axis=1)
    ap = np.where(positive, precision, 0.0).sum(axis=1) / np.maximum(n_pos, 1)
    return _mean_over_defined(ap, n_pos > 0, "Charades mAP")
