"""AdamW groups on the real model and the warm-up + cosine schedule."""
import math

import pytest
import torch

import egovlpv2
from egovlpv2.train.config import OptimConfig
from egovlpv2.train.optim import build_optimizer, build_scheduler, lr_factor, param_groups


@pytest.fixture(scope="module")
def groups():
    model = egovlpv2.create_model("egovlpv2-tiny")
    return model, {g["name"]: g for g in param_groups(model, OptimConfig(lr=1e-4, weight_decay=0.05))}


def _where(groups, name):
    return next(g for g in groups.values() if name in g["param_names"])


def test_every_trainable_parameter_is_in_exactly_one_group(groups):
    model, by_name = groups
    names = [n for g in by_name.values() for n in g["param_names"]]
    assert sorted(names) == sorted(n for n, p in model.named_parameters() if p.requires_grad)


def test_no_decay_on_biases_norms_embeddings_and_gates(groups):
    model, by_name = groups
    for name, param in model.named_parameters():
        group = _where(by_name, name)
        no_decay = (param.ndim <= 1 or "embed" in name and "patch_embed" not in name or "cls_token" in name)
        assert (group["weight_decay"] == 0.0) == no_decay, name
    gates = [n for n, _ in model.named_parameters() if n.endswith("gate")]
    assert gates and all(_where(by_name, n)["weight_decay"] == 0.0 for n in gates)
    assert _where(by_name, "text.embeddings.word_embeddings.weight")["weight_decay"] == 0.0
    assert _where(by_name, "video.patch_embed.proj.weight")["weight_decay"] == 0.05


def test_cross_modal_modules_and_heads_get_four_times_the_lr(groups):
    model, by_name = groups
    for name, _ in model.named_parameters():
        cross = any(k in name for k in ("cross_attn", "gate", "fused_", "vtm_head", "mlm_head"))
        assert _where(by_name, name)["lr"] == pytest.approx(4e-4 if cross else 1e-4), name
    assert _where(by_name, "video.blocks.0.attn.qkv.weight")["lr"] == pytest.approx(1e-4)


def test_schedule_warms_up_linearly_then_follows_a_cosine():
    total, warm = 100, 0.1
    assert [lr_factor(s, total, warm) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert lr_factor(9, total, warm) == pytest.approx(1.0)
    assert lr_factor(10, total, warm) == pytest.approx(1.0)
    assert lr_factor(55, total, warm) == pytest.approx(0.5)
    assert lr_factor(100, total, warm, min_lr_ratio=0.1) == pytest.approx(0.1)
    mid = 10 + 90 * 0.25
    assert lr_factor(int(mid), total, warm) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)), abs=0.02)


def test_scheduler_scales_each_groups_own_peak():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    model.cross_attn = torch.nn.Linear(2, 2)
    cfg = OptimConfig(lr=1.0, warmup_fraction=0.5)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=4)
    seen = []
    for _ in range(4):
        seen.append(sorted(g["lr"] for g in opt.param_groups))
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx([0.5, 0.5, 2.0, 2.0]) and seen[1] == pytest.approx([1.0, 1.0, 4.0, 4.0])
