"""The objective on the real ``egovlpv2-tiny`` model: 2 real ranks against one process, every parameter."""
import pytest
import torch

import egovlpv2
from egovlpv2.dist.local_group import run_on_ranks
from egovlpv2.losses.objective import LossConfig
from tests.losses.equivalence import global_batch, objective_step

VOCAB = 512
CASES = {"full": ([3, 3], False), "one_per_rank_checkpointed": ([1, 1], True)}


def make_model(checkpointing=False):
    torch.manual_seed(0)
    model = egovlpv2.create_model("egovlpv2-tiny").double()
    # Dropout off: the two settings must draw the same noise. Gates opened so that fusion matters.
    model.eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "alpha" in name or "gate" in name:
                p.fill_(0.5)
    model.set_grad_checkpointing(checkpointing)
    return model


def _batch(sizes):
    return global_batch(sum(sizes), frames=4, size=64, vocab=VOCAB, length=10)


def _ranks():
    return {name: objective_step(lambda: make_model(ckpt), _batch(sizes), sizes, LossConfig(), VOCAB)
            for name, (sizes, ckpt) in CASES.items()}


@pytest.fixture(scope="module")
def two_ranks():
    return run_on_ranks(_ranks, 2)


def test_gates_are_opened():
    names = [n for n, _ in make_model().named_parameters() if "alpha" in n or "gate" in n]
    assert names, "the fusion gates must be found, or fusion would be a no-op in these tests"


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_equal_one_process(two_ranks, case):
    sizes, ckpt = CASES[case]
    single_parts, single_grads, _ = objective_step(lambda: make_model(ckpt), _batch(sizes), [sum(sizes)],
                                                   LossConfig(), VOCAB)
    for rank_out in two_ranks:
        parts, grads, _ = rank_out[case]
        for key in ("loss", "egonce", "mlm", "vtm"):
            assert parts[key] == pytest.approx(single_parts[key], rel=1e-9), key
        assert set(grads) == set(single_grads)
        nonzero = 0
        for name, g in single_grads.items():
            assert torch.allclose(grads[name], g, rtol=1e-7, atol=1e-12), name
            nonzero += bool(g.abs().sum() > 0)
        assert nonzero > 0.9 * len(single_grads), "most parameters must receive a gradient"
