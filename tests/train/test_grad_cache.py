"""Gradient caching: M micro-batches of n equal one micro-batch of M*n, on 2 real ranks and on one."""
import pytest
import torch

from egovlpv2.dist import collectives as C
from egovlpv2.dist.local_group import run_on_ranks
from egovlpv2.losses.objective import LossConfig, PretrainObjective
from egovlpv2.train.grad_cache import RecomputeMismatch, cached_step
from tests.losses.api_model import ApiModel
from tests.losses.equivalence import averaged_gradients, global_batch, objective_step, rows_of, tokenizer_info
from tests.losses.test_objective_model import make_model as make_tiny

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 512
STEP = 3


def _batch(n):
    return global_batch(n, frames=4, size=64, vocab=VOCAB, length=10)


def cached(make_model, batch, sizes, cfg, micro):
    """The gradient-cached step on this rank's rows, split into micro-batches of ``micro``."""
    model = make_model()
    objective = PretrainObjective(model, cfg, tokenizer_info(VOCAB))
    start = sum(sizes[: C.rank()])
    local = rows_of(batch, start, start + sizes[C.rank()])
    micro_batches = [rows_of(local, i, i + micro) for i in range(0, sizes[C.rank()], micro)]
    parts = cached_step(objective, micro_batches, STEP, lambda fn, b: fn(model, b), lambda loss: loss.backward())
    parts = {k: (C.all_reduce_sum(torch.as_tensor(v).reshape(1).double()) / C.world_size()).item()
             for k, v in parts.items()}
    return parts, averaged_gradients(model)


CFGS = {"global_pool": LossConfig(), "local_pool": LossConfig(vtm_negative_pool="local")}


def _compare(reference, got):
    (ref_parts, ref_grads), (parts, grads) = reference, got
    for key in ("loss", "egonce", "mlm", "vtm"):
        assert parts[key] == pytest.approx(ref_parts[key], rel=1e-9), key
    for name, g in ref_grads.items():
        assert torch.allclose(grads[name], g, rtol=1e-7, atol=1e-12), name


def _two_rank_case():
    out = {}
    for name, cfg in CFGS.items():
        reference = objective_step(make_tiny, _batch(16), [8, 8], cfg, VOCAB, step=STEP)[:2]
        out[name] = (reference, cached(make_tiny, _batch(16), [8, 8], cfg, micro=2))
    return out


@pytest.mark.slow
def test_two_ranks_four_micro_batches_equal_one_micro_batch_of_eight():
    for rank_out in run_on_ranks(_two_rank_case, 2):
        for name in CFGS:
            _compare(*rank_out[name])


def test_single_process_and_micro_mode_differs():
    reference = objective_step(make_tiny, _batch(8), [8], LossConfig(), VOCAB, step=STEP)[:2]
    _compare(reference, cached(make_tiny, _batch(8), [8], LossConfig(), micro=2))
    # Plain accumulation (contrastive_batch=micro): each micro-batch only sees its own negatives.
    model = make_tiny()
    objective = PretrainObjective(model, LossConfig(contrastive_batch="micro"), tokenizer_info(VOCAB))
    batch = _batch(8)
    egonce = sum(objective(rows_of(batch, i, i + 2), step=STEP)[1]["egonce"].item() / 4 for i in range(0, 8, 2))
    assert egonce < reference[0]["egonce"] - 0.5, "fewer negatives per row give a visibly smaller EgoNCE"


def test_dropout_is_replayed_exactly():
    torch.manual_seed(0)
    model = ApiModel(vocab_size=VOCAB, dropout=0.5).double().train()
    objective = PretrainObjective(model, LossConfig(), tokenizer_info(VOCAB))
    batch = global_batch(6, frames=2, size=4, vocab=VOCAB)
    micro = [rows_of(batch, i, i + 2) for i in range(0, 6, 2)]
    cached_step(objective, micro, 0, lambda fn, b: fn(model, b), lambda loss: loss.backward(), check_recompute=True)
    # Without the replay the two passes would differ: dropout is really active here.
    first, second = (objective.encode(batch["video"], batch["input_ids"], batch["attention_mask"]).text_embed
                     for _ in range(2))
    assert not torch.equal(first, second)
    with pytest.raises(RecomputeMismatch):
        cached_step(objective, micro, 0, lambda fn, b: fn(model, b) if torch.is_grad_enabled() else
                    (torch.rand(1), fn(model, b))[1], lambda loss: loss.backward(), check_recompute=True)
