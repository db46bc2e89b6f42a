"""Single-tower initialisation: RoBERTa parity with Hugging Face and ViT inflation parity with timm."""
from functools import partial

import pytest
import torch
from torch import nn

import egovlpv2
from egovlpv2.model import CheckpointError
from egovlpv2.model.pretrained import inflate_vit

TINY_TEXT = dict(vocab_size=512, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256,
                 max_position_embeddings=64, type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-5)


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory):
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(1)
    hf = RobertaModel(RobertaConfig(**TINY_TEXT)).eval()
    path = tmp_path_factory.mktemp("roberta")
    hf.save_pretrained(path)
    return path, hf


def text_tokens():
    ids = torch.randint(3, 512, (3, 11), generator=torch.Generator().manual_seed(2))
    ids[:, 0] = 0
    mask = torch.ones_like(ids)
    ids[1, 7:], mask[1, 7:] = 1, 0
    ids[2, 4:], mask[2, 4:] = 1, 0
    return ids, mask


def test_text_tower_equals_hf_roberta(roberta_dir):
    path, hf = roberta_dir
    model = egovlpv2.create_model("egovlpv2-tiny", text_init=str(path)).eval()
    ids, mask = text_tokens()
    with torch.no_grad():
        states = model.text_lower(ids, mask)
        ours = model.text.run(states.hidden, mask, model.text_split, model.cfg.text.layers)
        theirs = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()  # padded positions are not used by anything downstream
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-5)
    # the text embedding is the projected <s> state
    torch.testing.assert_close(model.text_embed_from_lower(states), model.text_proj(theirs[:, 0]), atol=1e-5, rtol=1e-5)


def test_roberta_with_another_shape_is_refused(tmp_path):
    from transformers import RobertaConfig, RobertaModel

    RobertaModel(RobertaConfig(**{**TINY_TEXT, "num_hidden_layers": 3})).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="num_hidden_layers"):
        egovlpv2.create_model("egovlpv2-tiny", text_init=str(tmp_path))


def tiny_vit(**kw):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(3)
    # The video tower's LayerNorms use eps 1e-5 (as released), so the reference ViT does too.
    return VisionTransformer(img_size=64, patch_size=16, embed_dim=64, depth=4, num_heads=4, mlp_ratio=4.0,
                             qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-5), **kw).eval()


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_one_frame_timesformer_equals_the_vit(tmp_path, fmt):
    vit = tiny_vit(num_classes=10)
    path = tmp_path / f"vit.{fmt}"
    if fmt == "pth":
        torch.save(vit.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file(vit.state_dict(), str(path))
    model = egovlpv2.create_model("egovlpv2-tiny", num_frames=1, vision_init=str(path)).eval()
    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        states = model.video_lower(image[:, None], cls="dual")
        tokens = model.video.run(states.tokens, 1, model.video_split, model.cfg.video.depth)
        torch.testing.assert_close(model.video.norm(tokens), vit.forward_features(image), atol=1e-5, rtol=1e-5)
    # the temporal attention starts as a no-op but can learn (non-zero projection)
    assert model.video.blocks[0].time_attn.qkv.weight.abs().sum() == 0
    assert model.video.blocks[0].time_attn.proj.weight.abs().sum() > 0


def test_vit_with_unknown_keys_is_refused(tmp_path):
    state = tiny_vit(num_classes=0).state_dict()
    state["blocks.0.ls1.gamma"] = torch.ones(64)
    del state["blocks.1.norm1.bias"]
    torch.save(state, tmp_path / "vit.pth")
    with pytest.raises(CheckpointError) as err:
        inflate_vit(egovlpv2.create_model("egovlpv2-tiny").video, tmp_path / "vit.pth")
    assert "blocks.0.ls1.gamma" in str(err.value) and "blocks.1.norm1.bias" in str(err.value)


def test_vit_trained_at_another_resolution_has_its_position_embedding_resampled(tmp_path):
    vit = tiny_vit(num_classes=0)
    small = type(vit)(img_size=32, patch_size=16, embed_dim=64, depth=4, num_heads=4, num_classes=0)
    torch.save(small.state_dict(), tmp_path / "vit32.pth")
    model = egovlpv2.create_model("egovlpv2-tiny", vision_init=str(tmp_path / "vit32.pth"))
    assert model.video.pos_embed.shape == (1, 17, 64)
    torch.testing.assert_close(model.video.pos_embed[:, 0], small.pos_embed[:, 0])  # CLS position kept
    torch.testing.assert_close(model.video.blocks[2].mlp.fc1.weight, small.blocks[2].mlp.fc1.weight)
