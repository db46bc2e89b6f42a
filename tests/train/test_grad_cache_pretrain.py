"""Gradient caching inside run_pretraining: 2 torchrun ranks, ZeRO-2, 2 micro-batches per step."""
import pytest

from tests.helpers import torchrun
from tests.train.test_pretrain_e2e import WORKER, overrides, results, shards  # noqa: F401 (fixture)


@pytest.mark.slow
def test_pretraining_with_a_global_contrastive_batch_over_micro_batches(shards, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    args = overrides(shards, out, 3, **{"train.grad_accum_steps": 2, "data.batch_size": 2,
                                        "loss.contrastive_batch": "global", "eval.at_end": False})
    torchrun(WORKER, ["demo", "zero2", *args], timeout=400)
    (r0,) = results(out, 0)
    assert r0["finished"] and r0["step"] == 3
    history = r0["history"]
    assert {"egonce", "mlm", "vtm", "loss", "grad_norm"} <= set(history[0])
    assert all(h["loss"] == h["loss"] and h["grad_norm"] > 0 for h in history)  # finite, and gradients arrived
