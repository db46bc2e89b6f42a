"""Parameter counts by part and the analytic FLOPs model."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import egovlpv2
from egovlpv2.model import EgoVLPv2, resolve_model_config
from egovlpv2.model.flops import count_parameters, forward_flops, mlm_head_flops
from tests.model.test_api import make_batch


@pytest.fixture(scope="module")
def base_on_meta():
    with torch.device("meta"):
        return EgoVLPv2(resolve_model_config("egovlpv2-base"))


def test_base_parameter_count(base_on_meta):
    counts = count_parameters(base_on_meta)
    print("egovlpv2-base parameters:", counts)
    # The released EgoVLPv2.pth holds 381,612,137 values: these parameters plus the 514-entry position-id buffer.
    assert counts["total"] == 381_611_623
    # Per fused layer pair: video cross-attention 2,363,905 + text cross-attention 2,362,369.
    assert counts["fusion"] == 6 * (2_363_905 + 2_362_369) == 28_357_644
    assert counts["total"] == sum(p.numel() for p in base_on_meta.parameters())


def cls_slot_flops(cfg, frames: int) -> int:
    """Attention work the divided attention runs beyond the model's FLOPs, by design: every group holds
    CLS 0 in a slot whose query also runs, its result dropped (see egovlpv2.model.divided)."""
    patches = (cfg.video.img_size // cfg.video.patch_size) ** 2
    per_block = sum(4 * groups * (1 + length) * cfg.video.dim for groups, length in ((frames, patches), (patches, frames)))
    return cfg.video.depth * per_block


@pytest.mark.parametrize("mode", ["dual", "fusion"])
def test_analytic_flops_match_counted_flops(mode):
    model = egovlpv2.create_model("egovlpv2-tiny").eval()
    video, ids, mask = make_batch(b=1, t=3, length=12)
    # The math SDPA backend runs attention as matmuls that the counter sees.
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        if mode == "dual":
            model.encode_video(video), model.encode_text(ids, mask)
        else:
            fused = model.fused_from_lower(model.video_lower(video, cls="fused"), model.text_lower(ids, mask))
            model.vtm_logits(fused)
    analytic = forward_flops(model.cfg, frames=3, mode=mode, text_len=12).total
    assert analytic + cls_slot_flops(model.cfg, 3) == counter.get_total_flops()
    if mode == "fusion":
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.mlm_logits(fused)
        assert mlm_head_flops(model.cfg, 12) == counter.get_total_flops()


def test_stacked_alternative_matches_a_transformer_decoder_layer():
    """The stacked co-attention layer is a standard decoder layer: self-attention, cross-attention, FFN."""
    from torch import nn

    from egovlpv2.model.flops import stacked_fusion_flops, stacked_fusion_layer_parameters

    cfg = resolve_model_config("egovlpv2-tiny")
    d, heads, hidden = cfg.text.hidden, cfg.text.heads, cfg.text.intermediate
    layer = nn.TransformerDecoderLayer(d, heads, hidden, dropout=0.0, batch_first=True).train()
    assert stacked_fusion_layer_parameters(cfg) == sum(p.numel() for p in layer.parameters())
    frames, text_len = 2, 7
    video_tokens = torch.randn(1, 1 + frames * 16, d)
    text_tokens = torch.randn(1, text_len, d)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        layer(video_tokens, text_tokens)
        layer(text_tokens, video_tokens)
    assert stacked_fusion_flops(cfg, frames, text_len, layers=1) == counter.get_total_flops()
