"""Conversion to the Hub format: released-layout files and our safetensors export, bit for bit against
create_model(checkpoint=...), with the recipe detected, unmatched keys reported and checksums in the card."""
import hashlib
import json

import pytest
import torch

import egovlpv2
from egovlpv2.cli import run_cli
from egovlpv2.cli.export import main as export_main
from egovlpv2.model import CheckpointError, EgoVLPv2, EgoVLPv2VideoEncoder, resolve_model_config
from egovlpv2.model.loading import RELEASED_POSITION_IDS, torch_load
from egovlpv2.train.export import to_released, write_weights
from egovlpv2.train.hub_export import convert_to_hub, detect_model_config
from tests.model.test_hub import card_checksums, inputs, outputs
from tests.model.test_loading import released_keys, save_like_the_release


def deterministic_state(cfg):
    """Every weight of a model of ``cfg`` drawn from one seeded generator, in our names."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in EgoVLPv2(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(shape, generator=g) * 0.05 for k, shape in sorted(shapes.items())}


@pytest.fixture(scope="module")
def released_pth(tmp_path_factory):
    """Tiny deterministic weights saved as the released files are: released ``module.`` names under
    ``state_dict``, beside the release's pickled training config."""
    cfg = resolve_model_config("egovlpv2-tiny")
    path = tmp_path_factory.mktemp("rel") / "EgoVLPv2.pth"
    released = to_released(deterministic_state(cfg), cfg.text.max_positions)
    save_like_the_release(path, {"module." + k: v for k, v in released.items()})
    return path


def test_released_file_converts_bit_for_bit(released_pth, tmp_path):
    out = tmp_path / "hub"
    result = convert_to_hub(released_pth, out)  # recipe found from the file's keys and shapes
    assert result.config.name == "egovlpv2-tiny"
    reference = egovlpv2.create_model("egovlpv2-tiny", checkpoint=released_pth).eval()
    converted = EgoVLPv2.from_pretrained(out)
    ref, got = outputs(reference), outputs(converted)
    for key in ref:
        assert torch.equal(ref[key], got[key]), key
    with torch.no_grad():
        assert torch.equal(EgoVLPv2VideoEncoder.from_pretrained(out).encode_video(inputs()[0]), ref["video"])
    card = (out / "README.md").read_text()
    digest = hashlib.sha256(released_pth.read_bytes()).hexdigest()
    assert f"the released checkpoint `EgoVLPv2.pth` (sha256 `{digest}`)" in card and "license: mit" in card
    sums = card_checksums(out)
    assert sums["model.safetensors"][1] == hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    assert sums["config.json"][1] == hashlib.sha256((out / "config.json").read_bytes()).hexdigest()


def test_our_exports_convert_and_are_not_called_the_release(tmp_path):
    cfg = resolve_model_config("egovlpv2-tiny")
    path = write_weights(deterministic_state(cfg), tmp_path / "ours.safetensors", cfg, "step00000042")
    convert_to_hub(path, tmp_path / "hub", license="cc-by-nc-4.0")
    reference = egovlpv2.create_model("egovlpv2-tiny", checkpoint=path).eval()
    ref, got = outputs(reference), outputs(EgoVLPv2.from_pretrained(tmp_path / "hub"))
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "checkpoint step00000042" in card and "license: cc-by-nc-4.0" in card
    # The released layout written by egovlpv2-export --layout released: the release's names, not its
    # provenance. Its tensors are views into one buffer, as ZeRO consolidates them (torch.save keeps that).
    state = deterministic_state(cfg)
    flat = torch.cat([v.flatten() for v in state.values()])
    offsets = torch.tensor([0] + [v.numel() for v in state.values()]).cumsum(0).tolist()
    views = {k: flat[a:b].view(v.shape) for (k, v), a, b in zip(state.items(), offsets, offsets[1:])}
    ours = write_weights(views, tmp_path / "ours.pth", cfg, "step00000042", layout="released")
    convert_to_hub(ours, tmp_path / "hub2")
    card = (tmp_path / "hub2" / "README.md").read_text()
    assert "released checkpoint" not in card and "license: other" in card and "in the released layout" in card
    assert torch.equal(outputs(EgoVLPv2.from_pretrained(tmp_path / "hub2"))["match"], ref["match"])


@pytest.mark.parametrize("variant,recipe", [("base", "egovlpv2-base"), ("smallproj", "egovlpv2-base-smallproj")])
def test_the_released_key_lists_select_their_recipe(variant, recipe):
    state = {}
    for name, shape in released_keys(variant):
        state["module." + name] = (torch.arange(shape[-1]).expand(shape) if name == RELEASED_POSITION_IDS
                                   else torch.empty(shape, device="meta"))
    assert detect_model_config(state, variant).name == recipe


def test_unmatched_keys_are_reported(released_pth, tmp_path, capsys):
    state = torch_load(released_pth)["state_dict"]
    save_like_the_release(tmp_path / "extra.pth", {**state, "module.logit_scale": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="no mapping: \\['logit_scale'\\]"):
        convert_to_hub(tmp_path / "extra.pth", tmp_path / "hub")
    del state["module.video_model.norm.bias"]
    save_like_the_release(tmp_path / "missing.pth", state)
    argv = [str(tmp_path / "missing.pth"), "--format", "hub", "--out", str(tmp_path / "hub"), "--config", "egovlpv2-tiny"]
    assert run_cli(export_main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing keys (1): ['video.norm.bias']" in err
    assert not (tmp_path / "hub").exists()


def test_cli_writes_a_hub_directory(released_pth, tmp_path, capsys):
    out = tmp_path / "hub"
    assert export_main([str(released_pth), "--format", "hub", "--out", str(out)]) == 0
    assert "EgoVLPv2.from_pretrained" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["name"] == "egovlpv2-tiny" and config["checkpoint"] is None


def test_cli_refuses_options_of_the_other_format(released_pth, tmp_path, capsys):
    hub = [str(released_pth), "--format", "hub", "--out", str(tmp_path / "hub")]
    assert run_cli(export_main, [*hub, "--layout", "released"]) == 2
    assert "--layout applies to --format weights only" in capsys.readouterr().err
    assert run_cli(export_main, [str(tmp_path), "--out", str(tmp_path / "w.safetensors"), "--license", "mit"]) == 2
    assert "--license applies to --format hub only" in capsys.readouterr().err
    assert not (tmp_path / "hub").exists()
