"""The video encoder alone: same embeddings as the full model, saved and loaded on its own."""
import pytest
import torch
from safetensors.torch import load_file, save_file

import egovlpv2
from egovlpv2.model import CheckpointError, EgoVLPv2VideoEncoder, Provenance
from tests.model.test_hub import inputs, trained_like


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    model = trained_like(seed=3)
    model.provenance = Provenance(source="the full model's test", license="mit")
    directory = tmp_path_factory.mktemp("full")
    model.save_pretrained(directory)
    return model, directory


def test_encoder_of_a_hub_directory_gives_the_full_models_embeddings(full):
    model, directory = full
    encoder = EgoVLPv2VideoEncoder.from_pretrained(directory)
    video = inputs()[0]
    with torch.no_grad():
        assert torch.equal(encoder.encode_video(video), model.encode_video(video))
        assert torch.equal(EgoVLPv2VideoEncoder.from_model(model)(video), model.encode_video(video))
    assert encoder.embed_dim == model.embed_dim and encoder.num_frames == model.num_frames


def test_encoder_saves_only_the_video_tower_and_projection(full, tmp_path):
    model, directory = full
    encoder = EgoVLPv2VideoEncoder.from_pretrained(directory)
    encoder.save_pretrained(tmp_path / "enc")
    keys = set(load_file(tmp_path / "enc" / "model.safetensors"))
    assert keys and all(k.startswith(("video.", "video_proj.")) for k in keys)
    assert not any(".cross_attn." in k for k in keys)  # dual mode never uses the fusion modules
    card = (tmp_path / "enc" / "README.md").read_text()
    assert "video encoder" in card and "egovlpv2.EgoVLPv2VideoEncoder.from_pretrained" in card
    assert "Text tower" not in card
    assert "- Source: the full model's test" in card and "license: mit" in card  # the full model's provenance
    again = EgoVLPv2VideoEncoder.from_pretrained(tmp_path / "enc", num_frames=8)
    reference = egovlpv2.create_model("egovlpv2-tiny", checkpoint=directory, num_frames=8).eval()
    video = inputs(frames=8)[0]
    with torch.no_grad():
        assert torch.equal(again.encode_video(video), reference.encode_video(video))


def test_a_full_model_file_is_checked_whole(full, tmp_path):
    _, directory = full
    state = load_file(directory / "model.safetensors")
    del state["text.embeddings.word_embeddings.weight"]
    state["fused_extra.weight"] = torch.zeros(1)
    (tmp_path / "bad").mkdir()
    save_file(state, tmp_path / "bad" / "model.safetensors")
    (tmp_path / "bad" / "config.json").write_bytes((directory / "config.json").read_bytes())
    with pytest.raises(CheckpointError) as err:
        EgoVLPv2VideoEncoder.from_pretrained(tmp_path / "bad")
    assert "text.embeddings.word_embeddings.weight" in str(err.value) and "fused_extra.weight" in str(err.value)
