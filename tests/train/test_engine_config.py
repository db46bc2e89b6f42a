"""The DeepSpeed JSON and the recipe agree, or training does not start."""
import json

import pytest

from egovlpv2.config import ConfigError
from egovlpv2.recipes import shipped_dir
from egovlpv2.train.engine import load_ds_config, precision_dtype, reconcile_ds_config

DS_DIR = shipped_dir("deepspeed")


@pytest.mark.parametrize("name", ["zero2.json", "zero3.json", "zero2_offload.json"])
def test_shipped_configs_set_the_traps_explicitly(name):
    ds = load_ds_config(DS_DIR / name)
    assert "gradient_clipping" in ds and ds["bf16"]["enabled"]
    assert ds["data_types"]["grad_accum_dtype"] == "fp32"
    assert "optimizer" not in ds and "scheduler" not in ds
    out = reconcile_ds_config(ds, micro_batch_size=32, grad_accum_steps=2, world_size=8)
    assert (out["train_micro_batch_size_per_gpu"], out["gradient_accumulation_steps"], out["train_batch_size"]) == (32, 2, 512)


def test_zero_stages_and_offload():
    assert load_ds_config(DS_DIR / "zero3.json")["zero_optimization"]["stage"] == 3
    assert load_ds_config(DS_DIR / "zero2_offload.json")["zero_optimization"]["offload_optimizer"]["device"] == "cpu"


@pytest.mark.parametrize("patch, message", [
    ({"train_micro_batch_size_per_gpu": 16}, "train_micro_batch_size_per_gpu=16 disagrees"),
    ({"gradient_accumulation_steps": 4}, "gradient_accumulation_steps=4 disagrees"),
    ({"train_batch_size": 100}, "train_batch_size=100 disagrees"),
    ({"optimizer": {"type": "AdamW"}}, "optimizer"),
    ({"activation_checkpointing": {"partition_activations": True}}, "grad_checkpointing"),
    ({"fp16": {"enabled": True}}, "both bf16 and fp16"),
])
def test_disagreements_are_errors(patch, message):
    ds = dict(load_ds_config(DS_DIR / "zero2.json"), **patch)
    with pytest.raises(ConfigError, match=message):
        reconcile_ds_config(ds, 32, 1, 2)


def test_missing_clipping_is_an_error_and_bf16_accumulates_in_fp32(tmp_path):
    ds = {"bf16": {"enabled": True}}
    with pytest.raises(ConfigError, match="gradient_clipping"):
        reconcile_ds_config(ds, 8, 1, 1)
    out = reconcile_ds_config(dict(ds, gradient_clipping=1.0), 8, 1, 1)
    assert out["data_types"]["grad_accum_dtype"] == "fp32"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_ds_config(bad)


def test_precision_override():
    ds = load_ds_config(DS_DIR / "zero2.json")
    import torch

    assert precision_dtype(reconcile_ds_config(ds, 8, 1, 1)) == torch.bfloat16
    assert precision_dtype(reconcile_ds_config(ds, 8, 1, 1, precision="fp32")) == torch.float32
    assert precision_dtype(reconcile_ds_config(ds, 8, 1, 1, precision="fp16")) == torch.float16
    assert json.dumps(ds)  # the input is not modified in place
    assert ds["bf16"]["enabled"]
