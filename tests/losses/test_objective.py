"""PretrainObjective: configuration, compute reuse, and 2-rank gradient equivalence on real gloo processes."""
import pytest
import torch

from egovlpv2.config import ConfigError, apply_overrides
from egovlpv2.dist.local_group import run_on_ranks
from egovlpv2.losses.objective import LossConfig, PretrainObjective
from tests.losses.api_model import ApiModel
from tests.losses.equivalence import global_batch, objective_step, tokenizer_info

VOCAB = 40
EGONCE_ONLY = LossConfig(mlm_weight=0, vtm_weight=0)
FULL = LossConfig()
LOCAL_POOL = LossConfig(vtm_negative_pool="local")
# name: (config, rows per rank, rows with no maskable token)
CASES = {
    "egonce": (EGONCE_ONLY, [4, 4], ()),
    "full": (FULL, [4, 4], ()),
    "uneven": (FULL, [5, 3], ()),
    "one_per_rank": (FULL, [1, 1], ()),
    "rank1_unmaskable": (FULL, [3, 3], (3, 4, 5)),
}


def make_model():
    torch.manual_seed(0)
    return ApiModel(vocab_size=VOCAB).double()


def _batch(sizes, specials):
    return global_batch(sum(sizes), frames=2, size=4, vocab=VOCAB, specials_only=specials)


def _ranks():
    out = {}
    for name, (cfg, sizes, specials) in CASES.items():
        out[name] = objective_step(make_model, _batch(sizes, specials), sizes, cfg, VOCAB)
    out["local_pool"] = objective_step(make_model, _batch([4, 4], ()), [4, 4], LOCAL_POOL, VOCAB)
    return out


@pytest.fixture(scope="module")
def two_ranks():
    return run_on_ranks(_ranks, 2)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_equal_one_process_on_the_concatenated_batch(two_ranks, case):
    cfg, sizes, specials = CASES[case]
    single_parts, single_grads, _ = objective_step(make_model, _batch(sizes, specials), [sum(sizes)], cfg, VOCAB)
    for rank_out in two_ranks:
        parts, grads, _ = rank_out[case]
        for key in ("loss", "egonce", "mlm", "vtm"):
            if key in single_parts:
                assert parts[key] == pytest.approx(single_parts[key], rel=1e-9, abs=1e-12), key
        assert set(grads) == set(single_grads)
        for name, g in single_grads.items():
            assert torch.allclose(grads[name], g, rtol=1e-7, atol=1e-10), (case, name)
    assert all(torch.isfinite(torch.tensor(list(two_ranks[0][case][0].values()))))
    if cfg.vtm_weight > 0:
        # Global pool: chosen rows move by all-to-all; nothing the size of the raw videos ever travels.
        ops = two_ranks[0][case][2]
        assert any(op == "all_to_all" for op, _ in ops)
        video_bytes = _batch(sizes, specials)["video"][: sizes[0]].numel() * 8
        assert max(n for _, n in ops) < video_bytes


@pytest.mark.slow
def test_vtm_negative_pool_decides_whether_states_cross_ranks(two_ranks):
    """loss.vtm_negative_pool: "global" draws negatives from every rank's pairs (the chosen rows move by
    all-to-all), "local" from this rank's only (nothing moves); same batch, same sizes."""
    assert (FULL.vtm_negative_pool, LOCAL_POOL.vtm_negative_pool) == ("global", "local")
    moved = {case: "all_to_all" in [op for op, _ in two_ranks[0][case][2]] for case in ("full", "local_pool")}
    assert moved == {"full": True, "local_pool": False}
    assert torch.isfinite(torch.tensor(two_ranks[0]["local_pool"][0]["loss"]))


class CountingModel(ApiModel):
    def __init__(self):
        super().__init__(vocab_size=VOCAB)
        self.calls = {}

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if name in ("video_lower", "text_lower", "dual_from_lower", "fused_from_lower"):
            calls = super().__getattribute__("calls")
            calls[name] = calls.get(name, 0) + 1
        return attr


def test_lower_layers_are_reused_and_parts_are_detached():
    model = CountingModel().double()
    batch = global_batch(6, frames=2, size=4, vocab=VOCAB)
    loss, parts = PretrainObjective(model, LossConfig(), tokenizer_info(VOCAB))(batch)
    # Video lower layers once; text twice (the masked MLM text); one dual and one fused call.
    assert model.calls == {"video_lower": 1, "text_lower": 2, "dual_from_lower": 1, "fused_from_lower": 1}
    assert set(parts) == {"egonce", "mlm", "vtm", "egonce_acc", "mlm_acc", "vtm_acc"}
    assert all(not p.requires_grad for p in parts.values())
    assert loss.item() == pytest.approx(parts["egonce"].item() + parts["mlm"].item() + 2 * parts["vtm"].item())


def test_weights_are_configurable_and_validated():
    model = make_model()
    batch = global_batch(6, frames=2, size=4, vocab=VOCAB)
    cfg = apply_overrides(LossConfig(), ["vtm_weight=0.5", "mlm_weight=0"])
    loss, parts = PretrainObjective(model, cfg, tokenizer_info(VOCAB))(batch, step=0)
    assert "mlm" not in parts
    assert loss.item() == pytest.approx(parts["egonce"].item() + 0.5 * parts["vtm"].item())
    for bad in (["mlm_probability=0"], ["temperature=-1"], ["vtm_negative_pool=remote"], ["contrastive_batch=x"]):
        with pytest.raises(ConfigError):
            apply_overrides(LossConfig(), bad)
