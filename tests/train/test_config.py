"""Recipes parse, overrides apply, and inconsistent recipes fail with a message naming the keys."""
from pathlib import Path

import pytest

from egovlpv2.config import ConfigError, load_yaml
from egovlpv2.recipes import shipped_dir
from egovlpv2.train.config import load_pretrain_config, pretrain_config_from_dict, save_resolved

RECIPES = sorted(shipped_dir("pretrain").glob("*.yaml"))


def test_the_paper_and_demo_recipes_ship():
    assert {"egoclip", "demo"} <= {p.stem for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_parses_and_round_trips(path, tmp_path):
    cfg = load_pretrain_config(path)
    assert cfg.data.num_frames == cfg.model.video.num_frames
    save_resolved(cfg, tmp_path)
    again = pretrain_config_from_dict(load_yaml(tmp_path / "config.yaml"))
    assert again == cfg


def test_egoclip_recipe_is_the_papers():
    cfg = load_pretrain_config("egoclip")
    assert cfg.model.video.depth == 12 and cfg.model.fusion_layers == 6 and cfg.model.projection == "mlp4096"
    assert (cfg.optim.lr, cfg.optim.cross_modal_lr_mult, cfg.optim.weight_decay) == (3e-5, 4.0, 0.01)
    assert tuple(cfg.optim.betas) == (0.9, 0.98) and cfg.optim.warmup_fraction == 0.1
    assert (cfg.data.batch_size, cfg.data.num_frames, cfg.data.text_max_len) == (32, 4, 15)
    assert cfg.train.epochs == 20 and cfg.train.grad_checkpointing
    assert (cfg.loss.egonce_weight, cfg.loss.mlm_weight, cfg.loss.vtm_weight, cfg.loss.temperature) == (1, 1, 2, 0.05)


def test_overrides_reach_nested_sections():
    cfg = load_pretrain_config("demo", ["optim.lr=1e-3", "model.video.num_frames=2", "data.num_frames=2"])
    assert cfg.optim.lr == 1e-3 and cfg.model.video.num_frames == 2


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "unknown key 'lrr'"),
    ("model.video.num_frames=8", "data.num_frames=4 but model.video.num_frames=8"),
    ("train.precision=fp8", "fp8"),
    ("optim.warmup_fraction=1.5", "warmup_fraction"),
    ("eval.num_frames=16", "eval.num_frames=16 exceeds"),
    ("train.checkpoint_blocks=-1", "checkpoint_blocks=-1 must be >= 0"),
])
def test_bad_overrides_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_pretrain_config("demo", [override])


def test_unknown_recipe_and_model_names(tmp_path):
    with pytest.raises(ConfigError, match="shipped"):
        load_pretrain_config("no-such-recipe")
    path = Path(tmp_path, "r.yaml")
    path.write_text("model: egovlpv2-huge\n")
    with pytest.raises(ConfigError, match="egovlpv2-huge"):
        load_pretrain_config(path)
