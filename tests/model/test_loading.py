"""EgoVLPv2 checkpoints: the released layout through the name table, strict errors, temporal resizing."""
import json
import pathlib
import sys
import types

import numpy as np
import pytest
import torch

import egovlpv2
from egovlpv2.model import CheckpointError, EgoVLPv2, resolve_model_config
from egovlpv2.model.loading import (
    RELEASED_POSITION_IDS,
    load_checkpoint,
    load_state_dict_strict,
    map_released_key,
    prepare_checkpoint_state,
    resize_temporal_embed,
)

REFERENCE = pathlib.Path(__file__).resolve().parents[3] / "shared" / "reference"
REFERENCE = REFERENCE if REFERENCE.is_dir() else pathlib.Path("/work/shared/reference")


def released_keys(variant):
    path = REFERENCE / f"released_checkpoint_keys_{variant}.json"
    if not path.is_file():
        pytest.skip(f"reference key list not available: {path}")
    return [(name, tuple(shape)) for name, shape in json.loads(path.read_text())]


def released_state(variant):
    """A state dict in the released file's exact layout: every key and shape, ``module.`` prefix, in ``state_dict``."""
    state = {}
    for name, shape in released_keys(variant):
        value = torch.arange(shape[-1]).expand(shape).clone() if name == RELEASED_POSITION_IDS else torch.empty(shape)
        state["module." + name] = value
    return {"state_dict": state, "epoch": 10}


@pytest.mark.parametrize("variant,recipe", [("base", "egovlpv2-base"), ("smallproj", "egovlpv2-base-smallproj")])
def test_released_layout_loads_strictly(variant, recipe):
    with torch.device("meta"):
        model = EgoVLPv2(resolve_model_config(recipe))
    checkpoint = released_state(variant)
    state = prepare_checkpoint_state(model, checkpoint)
    load_state_dict_strict(model, state, source=variant, assign=True)
    # every parameter now is the released tensor with the mapped name
    params = dict(model.named_parameters())
    for name, _ in released_keys(variant):
        if name != RELEASED_POSITION_IDS:
            assert params[map_released_key(name)].data_ptr() == checkpoint["state_dict"]["module." + name].data_ptr()
    assert not any(p.is_meta for p in model.parameters())
    assert len(params) == len(released_keys(variant)) - 1


def test_every_released_name_maps_to_a_distinct_parameter_of_the_same_shape():
    with torch.device("meta"):
        model = EgoVLPv2(resolve_model_config("egovlpv2-base"))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mapped = {map_released_key(n): s for n, s in released_keys("base") if n != RELEASED_POSITION_IDS}
    assert None not in mapped
    assert mapped == shapes


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    torch.manual_seed(0)
    model = egovlpv2.create_model("egovlpv2-tiny")
    with torch.no_grad():
        model.video.temporal_embed.normal_()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.save({"module": model.state_dict(), "step": 3}, path)  # DeepSpeed-style wrapping
    return path, model


def test_own_export_round_trips(tiny_export):
    path, model = tiny_export
    loaded = egovlpv2.create_model("egovlpv2-tiny", checkpoint=path)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_temporal_embedding_interpolates_4_to_16_frames(tiny_export):
    path, model = tiny_export
    loaded = egovlpv2.create_model("egovlpv2-tiny", checkpoint=path, num_frames=16)
    old, new = model.video.temporal_embed.detach(), loaded.video.temporal_embed.detach()
    assert new.shape == (1, 16, 64)
    torch.testing.assert_close(new[:, 0], old[:, 0])
    torch.testing.assert_close(new[:, 15], old[:, 3])
    torch.testing.assert_close(new[:, 5], old[:, 1])  # 16 frames over 4: frame 5 sits exactly on frame 1
    torch.testing.assert_close(new[:, 1], old[:, 0] + (old[:, 1] - old[:, 0]) * 0.2)
    video = torch.randn(1, 16, 3, 64, 64)
    assert loaded.encode_video(video).shape == (1, 256)
    shrunk = egovlpv2.create_model("egovlpv2-tiny", checkpoint=path, num_frames=2)
    torch.testing.assert_close(shrunk.video.temporal_embed.detach(), old[:, :2])
    assert resize_temporal_embed(old, 4) is old


def test_missing_and_unexpected_keys_are_listed(tmp_path, tiny_export):
    _, model = tiny_export
    state = dict(model.state_dict())
    del state["text.encoder.layer.3.cross_attn.gate"]
    del state["video.norm.bias"]
    state["video.blocks.0.extra.weight"] = torch.zeros(1)
    state["mlm_head.bias"] = torch.zeros(5)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(egovlpv2.create_model("egovlpv2-tiny"), tmp_path / "bad.pth")
    message = str(err.value)
    for key in ("text.encoder.layer.3.cross_attn.gate", "video.norm.bias", "video.blocks.0.extra.weight",
                "mlm_head.bias: (5,)"):
        assert key in message


def test_released_layout_errors_name_the_released_keys():
    with torch.device("meta"):
        model = EgoVLPv2(resolve_model_config("egovlpv2-base"))
    checkpoint = released_state("base")
    checkpoint["state_dict"]["module.video_model.head.weight"] = torch.empty(2)
    with pytest.raises(CheckpointError, match="unexpected keys .*video.head.weight"):
        load_state_dict_strict(model, prepare_checkpoint_state(model, checkpoint), assign=True)
    checkpoint = released_state("base")
    checkpoint["state_dict"]["module.logit_scale"] = torch.empty(1)
    with pytest.raises(CheckpointError, match="no mapping: \\['logit_scale'\\]"):
        prepare_checkpoint_state(model, checkpoint)
    checkpoint = released_state("base")
    checkpoint["state_dict"]["module." + RELEASED_POSITION_IDS] += 1
    with pytest.raises(CheckpointError, match="position"):
        prepare_checkpoint_state(model, checkpoint)


def save_like_the_release(path, state_dict):
    """``torch.save`` as the released files are: ``state_dict`` beside a pickled training-config object
    (``parse_config.ConfigParser``) and numpy scalars."""
    module = types.ModuleType("parse_config")

    class ConfigParser:
        pass

    ConfigParser.__module__, ConfigParser.__qualname__ = "parse_config", "ConfigParser"
    module.ConfigParser = ConfigParser
    config = ConfigParser()
    config.__dict__.update({"_config": {"arch": {"type": "FrozenInTime"}}, "_save_dir": pathlib.PosixPath("/x")})
    sys.modules["parse_config"] = module
    try:
        torch.save({"state_dict": state_dict, "monitor_best": np.float64(0.5), "config": config}, path)
    finally:
        del sys.modules["parse_config"]


def test_released_metadata_loads_with_weights_only(tmp_path, tiny_export):
    """The released files pickle a training-config object and numpy scalars next to the weights."""
    _, model = tiny_export
    save_like_the_release(tmp_path / "release.pth", {"module." + k: v for k, v in model.state_dict().items()})
    loaded = egovlpv2.create_model("egovlpv2-tiny", checkpoint=tmp_path / "release.pth")
    assert torch.equal(loaded.video.pos_embed, model.video.pos_embed)
    # anything else that would need code execution is refused, with the global named
    torch.save({"state_dict": model.state_dict(), "evil": types.SimpleNamespace(a=1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="SimpleNamespace"):
        load_checkpoint(egovlpv2.create_model("egovlpv2-tiny"), tmp_path / "other.pth")
