"""Metrics against naive loop references (random inputs with ties) and against hand-worked cases."""
import math

import numpy as np
import pytest
import torch

from egovlpv2.eval.metrics import charades_map, egomcq_accuracy, mir_map, mir_ndcg


def _order(row):
    # Descending score, ties by column index: the documented tie rule.
    return sorted(range(len(row)), key=lambda j: (-row[j], j))


def naive_map_rows(sim, rel):
    aps = []
    for s, r in zip(sim.tolist(), rel.tolist()):
        n_full = sum(1 for x in r if x == 1)
        if n_full == 0:
            continue
        total, found = 0.0, 0.0
        for k, j in enumerate(_order(s), start=1):
            found += r[j]
            if r[j] == 1:
                total += found / k
        aps.append(total / n_full)
    return 100.0 * sum(aps) / len(aps)


def naive_ndcg_rows(sim, rel):
    values = []
    for s, r in zip(sim.tolist(), rel.tolist()):
        k_i = sum(1 for x in r if x > 0)
        if k_i == 0:
            continue
        dcg = sum(r[j] / math.log2(k + 1) for k, j in enumerate(_order(s)[:k_i], start=1))
        ideal = sum(x / math.log2(k + 1) for k, x in enumerate(sorted(r, reverse=True)[:k_i], start=1))
        values.append(dcg / ideal)
    return 100.0 * sum(values) / len(values)


def naive_charades(scores, labels):
    scores = scores.copy()
    scores[labels.sum(1) == 0] = -np.inf
    aps = []
    for c in range(scores.shape[1]):
        col = scores[:, c].tolist()
        lab = labels[:, c].tolist()
        n_pos = sum(lab)
        if n_pos == 0:
            continue
        hits, total = 0, 0.0
        for k, i in enumerate(_order(col), start=1):
            if lab[i]:
                hits += 1
                total += hits / k
        aps.append(total / n_pos)
    return 100.0 * sum(aps) / len(aps)


def random_retrieval(rng, v, t):
    # Coarse similarities force ties; relevancy mixes exact 1s, graded values and zeros.
    sim = np.round(rng.normal(size=(v, t)), 1)
    rel = rng.choice([0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0], size=(v, t))
    rel[0] = 0.0  # a clip with nothing relevant
    rel[:, 1] = 0.0  # a caption with nothing relevant
    return sim, rel


@pytest.mark.parametrize("seed", range(5))
def test_mir_map_matches_naive_reference(seed):
    rng = np.random.default_rng(seed)
    sim, rel = random_retrieval(rng, 13, 9)
    got = mir_map(sim, rel)
    assert got["v2t"] == pytest.approx(naive_map_rows(sim, rel))
    assert got["t2v"] == pytest.approx(naive_map_rows(sim.T, rel.T))
    assert got["avg"] == pytest.approx((got["v2t"] + got["t2v"]) / 2)


@pytest.mark.parametrize("seed", range(5))
def test_mir_ndcg_matches_naive_reference(seed):
    rng = np.random.default_rng(seed)
    sim, rel = random_retrieval(rng, 11, 14)
    got = mir_ndcg(sim, rel)
    assert got["v2t"] == pytest.approx(naive_ndcg_rows(sim, rel))
    assert got["t2v"] == pytest.approx(naive_ndcg_rows(sim.T, rel.T))


def test_mir_map_chunked_rows_match_naive(monkeypatch):
    monkeypatch.setattr("egovlpv2.eval.metrics._ROW_CHUNK", 3)
    rng = np.random.default_rng(7)
    sim, rel = random_retrieval(rng, 10, 8)
    assert mir_map(sim, rel)["v2t"] == pytest.approx(naive_map_rows(sim, rel))
    assert mir_ndcg(sim, rel)["t2v"] == pytest.approx(naive_ndcg_rows(sim.T, rel.T))


def test_mir_map_hand_worked_uses_graded_precision():
    sim = np.array([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4]])
    rel = np.array([[1.0, 0.5, 1.0, 0.0], [1.0, 0.5, 1.0, 0.0]])
    got = mir_map(sim, rel)
    # Row 0 ranks [1, .5, 1, 0]: p(1) = 1, p(3) = 2.5 / 3 (graded sum, not a count of 1s = 2 / 3).
    # Row 1 ranks [0, 1, .5, 1]: p(2) = 1 / 2, p(4) = 2.5 / 4.
    assert got["v2t"] == pytest.approx(100 * ((1 + 2.5 / 3) / 2 + (0.5 + 2.5 / 4) / 2) / 2)
    # Columns 1 and 3 have no entry equal to 1 and are left out; columns 0 and 2 are perfect.
    assert got["t2v"] == pytest.approx(100.0)


def test_mir_ndcg_hand_worked():
    sim = np.array([[0.9, 0.8, 0.7, 0.1]])
    rel = np.array([[1.0, 0.5, 1.0, 0.0]])
    dcg = 1 + 0.5 / math.log2(3) + 1 / 2
    ideal = 1 + 1 / math.log2(3) + 0.5 / 2
    assert mir_ndcg(sim, rel)["v2t"] == pytest.approx(100 * dcg / ideal)
    # The ideal order gives 100; the caption column with relevancy 0 is left out of T->V.
    assert mir_ndcg(np.array([[3.0, 1.0, 2.0, 0.0]]), rel)["v2t"] == pytest.approx(100.0)


def test_ties_rank_lower_column_first():
    rel = np.array([[0.0, 1.0]])
    assert mir_map(np.array([[0.5, 0.5]]), rel)["v2t"] == pytest.approx(50.0)
    assert mir_map(np.array([[0.5, 0.5]]), rel[:, ::-1].copy())["v2t"] == pytest.approx(100.0)


def test_mir_rejects_undefined_and_mismatched_inputs():
    with pytest.raises(ValueError, match="no row"):
        mir_map(np.ones((2, 3)), np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="same shape"):
        mir_ndcg(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        mir_map(np.full((2, 2), np.nan), np.eye(2))


def test_metrics_accept_torch_tensors():
    rng = np.random.default_rng(3)
    sim, rel = random_retrieval(rng, 6, 5)
    assert mir_map(torch.from_numpy(sim).float(), torch.from_numpy(rel))["avg"] == pytest.approx(
        mir_map(sim.astype(np.float32), rel)["avg"]
    )


def test_egomcq_accuracy_hand_worked():
    scores = np.array(
        [
            [0.1, 0.9, 0.0, 0.0, 0.0],  # inter, answer 1: right
            [0.5, 0.1, 0.0, 0.0, 0.0],  # inter, answer 2: wrong
            [0.0, 0.0, 0.0, 0.0, 1.0],  # inter, answer 4: right
            [0.3, 0.3, 0.0, 0.0, 0.0],  # intra, answer 1: a tie picks choice 0, wrong
            [0.0, 0.0, 0.7, 0.0, 0.0],  # intra, answer 2: right
        ]
    )
    got = egomcq_accuracy(scores, [1, 2, 4, 1, 2], torch.tensor([1, 1, 1, 2, 2]))
    assert got == {"inter": pytest.approx(200 / 3), "intra": pytest.approx(50.0)}


def test_egomcq_accuracy_random_and_missing_type():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 5))
    answers = rng.integers(0, 5, size=50)
    types = rng.integers(1, 3, size=50)
    got = egomcq_accuracy(scores, answers, types)
    for name, code in (("inter", 1), ("intra", 2)):
        rows = [i for i in range(50) if types[i] == code]
        expected = 100 * sum(int(np.argmax(scores[i]) == answers[i]) for i in rows) / len(rows)
        assert got[name] == pytest.approx(expected)
    assert math.isnan(egomcq_accuracy(scores[:2], [0, 0], [1, 1])["intra"])
    with pytest.raises(ValueError, match="types"):
        egomcq_accuracy(scores[:2], [0, 0], [1, 3])


@pytest.mark.parametrize("seed", range(5))
def test_charades_map_matches_naive_reference(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=(20, 8)), 1)
    labels = (rng.random((20, 8)) < 0.2).astype(np.int64)
    labels[:, 0] = 0  # a class with no positive
    labels[3] = 0  # a video with no label
    assert charades_map(scores, labels) == pytest.approx(naive_charades(scores, labels))


def test_charades_map_hand_worked():
    labels = np.array([[1, 0], [0, 0], [1, 1]])
    scores = np.array([[0.1, 0.3], [0.9, 0.2], [0.5, 0.1]])
    # Video 1 has no label, so it ranks last everywhere. Class 0: v2(+) v0(+) -> AP 1.
    # Class 1: v0(-) v2(+) -> AP 1/2.
    assert charades_map(scores, labels) == pytest.approx(75.0)
    # Every video labelled: class 0 ranks (+ - +); class 1 ties everywhere, so v0(-) precedes v1(+).
    scores = np.array([[0.9, 0.0], [0.8, 0.0], [0.1, 0.0]])
    labels = np.array([[1, 0], [0, 1], [1, 0]])
    assert charades_map(scores, labels) == pytest.approx(100 * ((1 + 2 / 3) / 2 + 1 / 2) / 2)
