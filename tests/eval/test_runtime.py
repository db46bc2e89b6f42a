"""Dealing samples to ranks and reassembling them: each sample exactly once."""
import pytest
import torch

from egovlpv2.eval.runtime import EvalContext, gather_rows, my_share, share_indices


def ctx(rank, world, equal=False):
    return EvalContext(torch.device("cpu"), rank, world, equal_batches=equal)


def test_round_robin_shares_cover_every_sample_once():
    shares = [share_indices(7, ctx(r, 3)) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(i for s in shares for i in s) == list(range(7))


def test_equal_batches_pad_with_marked_repeats():
    shares = [share_indices(7, ctx(r, 3, equal=True)) for r in range(3)]
    assert [len(s) for s in shares] == [3, 3, 3]
    assert shares[1] == [1, 4, -2] and shares[2] == [2, 5, -3]  # -1 - i repeats sample i
    assert list(my_share("abcdefg", ctx(1, 3, equal=True))) == [(1, "b"), (4, "e"), (-1, "b")]
    # More ranks than samples: an empty share still runs one (discarded) repeat.
    assert share_indices(1, ctx(1, 2, equal=True)) == [-1]


def test_gather_rows_orders_drops_padding_and_rejects_repeats():
    rows = [torch.tensor([float(i)]) for i in (2, 0, 1, 0)]
    out = gather_rows([2, 0, 1, -1], rows, ctx(0, 1), "rows")
    assert out.flatten().tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(RuntimeError, match="scored twice"):
        gather_rows([0, 1, 1], rows[:3], ctx(0, 1), "rows")
    with pytest.raises(RuntimeError, match="never scored"):
        gather_rows([0, 2], rows[:2], ctx(0, 1), "rows")
