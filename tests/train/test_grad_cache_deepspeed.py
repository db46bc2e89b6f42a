"""Gradient caching under DeepSpeed on 2 real ranks: ZeRO-2 and ZeRO-3, clipping, bf16 with activation
checkpointing, the engine's accumulation boundary, and one gradient reduction per step."""
import os

import pytest
import torch

from egovlpv2.dist.local_group import run_on_ranks
from egovlpv2.losses.objective import LossConfig, PretrainObjective
from egovlpv2.train.engine import ObjectiveModule, register_container_parameters, unwrap_model
from egovlpv2.train.grad_cache import deepspeed_grad_cache_step
from egovlpv2.train.loop import accumulate_step
from tests.losses.equivalence import global_batch, rows_of, tokenizer_info
from tests.losses.test_objective_model import make_model
from tests.helpers import liveness

VOCAB = 512
PER_RANK = 8


def _engine(stage, bf16, micro, accum, checkpointing):
    """The training engine's wrapper and ZeRO-3 registration, with plain SGD: unlike Adam's first step,
    its update is proportional to the gradient, so equal updates mean equal gradients."""
    import deepspeed

    model = make_model(checkpointing).float()
    wrapper = ObjectiveModule(model, PretrainObjective(model, LossConfig(), tokenizer_info(VOCAB)))
    config = {"train_micro_batch_size_per_gpu": micro, "gradient_accumulation_steps": accum,
              "gradient_clipping": 1.0, "zero_allow_untested_optimizer": True,
              "zero_optimization": {"stage": stage}, "bf16": {"enabled": bf16},
              "comms_logger": {"enabled": True, "verbose": False, "prof_all": True}}
    if bf16:
        config["data_types"] = {"grad_accum_dtype": "fp32"}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine, *_ = deepspeed.initialize(model=wrapper, optimizer=optimizer, config=config)
    if stage == 3:
        register_container_parameters(wrapper)
    return engine


def _reductions():
    import deepspeed.comm as dist

    # Gradient reductions only: ZeRO-3 also all-gathers parameters for every forward, which pass 1 adds to.
    return {op: sum(v[0] for v in sizes.values()) for op, sizes in dist.comms_logger.comms_dict.items()
            if "reduce" in op}


def _one_step(stage, bf16, mode, checkpointing=False):
    """``mode``: "one" (one micro-batch of 8), "cached" (4 x 2, gradient caching) or "micro" (4 x 2,
    DeepSpeed's plain accumulation: what ``loss.contrastive_batch=micro`` trains with)."""
    import deepspeed.comm as dist
    from deepspeed.utils import safe_get_full_fp32_param

    from egovlpv2.dist import collectives as C

    split = mode != "one"
    engine = _engine(stage, bf16, 2 if split else PER_RANK, 4 if split else 1, checkpointing)
    batch = global_batch(2 * PER_RANK, frames=4, size=64, vocab=VOCAB, length=10, dtype=torch.float32)
    local = rows_of(batch, C.rank() * PER_RANK, (C.rank() + 1) * PER_RANK)
    dist.comms_logger.comms_dict.clear()
    if split:
        micro = [rows_of(local, i, i + 2) for i in range(0, PER_RANK, 2)]
        step_fn = deepspeed_grad_cache_step if mode == "cached" else accumulate_step
        loss = step_fn(engine, micro, 3)["loss"]
    else:
        loss, _ = engine(local, step=3)
        engine.backward(loss)
        engine.step()
    reductions = _reductions()
    params = {n: safe_get_full_fp32_param(p).clone() for n, p in unwrap_model(engine).named_parameters()}
    return {"loss": float(C.all_reduce_sum(loss.detach().float().reshape(1)) / C.world_size()),
            "grad_norm": float(engine.get_global_grad_norm()), "params": params, "reductions": reductions,
            "global_steps": engine.global_steps}


SETTINGS = {"zero2_fp32": (2, False, False), "zero3_fp32": (3, False, False), "zero2_bf16_ckpt": (2, True, True)}


def _ranks():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    out = {name: (_one_step(stage, bf16, "one", ckpt), _one_step(stage, bf16, "cached", ckpt))
           for name, (stage, bf16, ckpt) in SETTINGS.items()}
    out["micro"] = _one_step(2, False, "micro")
    return out


@pytest.fixture(scope="module")
def results():
    return run_on_ranks(_ranks, 2, timeout=liveness(900))


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_four_cached_micro_batches_update_like_one_micro_batch_of_eight(results, setting):
    bf16 = SETTINGS[setting][1]
    tol = dict(rtol=2e-2, atol=2e-3) if bf16 else dict(rtol=1e-5, atol=1e-6)
    reference, cached = results[0][setting]
    assert cached["global_steps"] == reference["global_steps"] == 1, "one optimizer step at the boundary"
    assert cached["loss"] == pytest.approx(reference["loss"], rel=tol["rtol"])
    assert cached["grad_norm"] == pytest.approx(reference["grad_norm"], rel=tol["rtol"])
    assert reference["grad_norm"] > 1.0, "the clipping at 1.0 must be active in this test"
    for name, p in reference["params"].items():
        assert torch.allclose(cached["params"][name], p, **tol), name


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_gradients_reduce_once_per_step(results, setting):
    reference, cached = results[0][setting]
    assert reference["reductions"], "the comms logger must see DeepSpeed's gradient reduction"
    assert cached["reductions"] == reference["reductions"]


@pytest.mark.slow
def test_micro_mode_is_plain_accumulation_and_visibly_differs(results):
    one, cached = results[0]["zero2_fp32"]
    micro = results[0]["micro"]
    assert micro["global_steps"] == 1
    # Each micro-batch of 2 x 2 ranks sees 3 negatives instead of 15: a clearly smaller EgoNCE, other updates.
    assert micro["loss"] < one["loss"] - 0.5
    differs = [not torch.allclose(micro["params"][n], p, rtol=1e-5, atol=1e-6) for n, p in one["params"].items()]
    assert sum(differs) > len(differs) // 2
