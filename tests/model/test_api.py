"""The public model API on the tiny recipe: shapes, normalisation, modes."""
import pytest
import torch

import egovlpv2
from egovlpv2.config import ConfigError


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return egovlpv2.create_model("egovlpv2-tiny").eval()


def make_batch(b=3, t=4, size=64, length=9, vocab=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(b, t, 3, size, size, generator=g)
    ids = torch.randint(3, vocab, (b, length), generator=g)
    ids[:, 0] = 0
    mask = torch.ones(b, length, dtype=torch.long)
    for i in range(1, b):  # varied padding
        mask[i, length - 2 * i :] = 0
        ids[i, length - 2 * i :] = 1
    return video, ids, mask


def test_public_calls_shapes_and_norms(model):
    video, ids, mask = make_batch()
    with torch.no_grad():
        v, t = model.encode_video(video), model.encode_text(ids, mask)
        score = model.match_score(video, ids, mask)
        vs, ts = model.video_lower(video), model.text_lower(ids, mask)
        dv, dt = model.dual_from_lower(vs, ts)
        fused = model.fused_from_lower(vs, ts)
    assert v.shape == t.shape == (3, model.embed_dim) == (3, 256)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(3))
    assert score.shape == (3,) and ((score > 0) & (score < 1)).all()
    # dual_from_lower on shared lower states gives the encode_* embeddings before normalisation
    torch.testing.assert_close(dv / dv.norm(dim=-1, keepdim=True), v, atol=1e-6, rtol=0)
    torch.testing.assert_close(dt / dt.norm(dim=-1, keepdim=True), t, atol=1e-6, rtol=0)
    assert model.vtm_logits(fused).shape == (3, 2)
    assert model.mlm_logits(fused).shape == (3, 9, 512)
    picked = mask.bool()
    torch.testing.assert_close(model.mlm_logits(fused, picked), model.mlm_logits(fused)[picked])


def test_fewer_frames_run_and_more_frames_are_refused(model):
    video, _, _ = make_batch(t=2)
    assert model.encode_video(video).shape == (3, 256)
    with pytest.raises(ValueError, match="num_frames=5"):
        model.encode_video(torch.zeros(1, 5, 3, 64, 64))
    with pytest.raises(ValueError, match="64x64"):
        model.encode_video(torch.zeros(1, 4, 3, 32, 32))


def test_overrides():
    m = egovlpv2.create_model("egovlpv2-tiny", num_frames=8, projection="mlp4096")
    assert m.num_frames == 8 and m.embed_dim == 4096
    with pytest.raises(ConfigError, match="unknown create_model overrides"):
        egovlpv2.create_model("egovlpv2-tiny", frames=8)
    with pytest.raises(ConfigError, match="unknown model recipe"):
        egovlpv2.create_model("egovlpv2-huge")


def test_gates_are_shape_one_parameters(model):
    gates = {n: p for n, p in model.named_parameters() if n.endswith("cross_attn.gate")}
    assert len(gates) == 2 * model.cfg.fusion_layers
    assert all(p.shape == (1,) and p.item() == 0 for p in gates.values())
