"""Fusion mode against dual mode, the shared lower layers, and activation checkpointing."""
import pytest
import torch

import egovlpv2
from tests.model.test_api import make_batch


def tiny(seed=0):
    torch.manual_seed(seed)
    return egovlpv2.create_model("egovlpv2-tiny").eval()


def share_cls_and_norm(model):
    """Give the fused path the dual path's CLS token and final norm, so both compute the same thing."""
    with torch.no_grad():
        model.fused_cls_token.copy_(model.video.cls_token)
        model.fused_norm.load_state_dict(model.video.norm.state_dict())
    model.fused_norm.eps = model.video.norm.eps


@pytest.mark.parametrize("layout", ["fused", "both"])
def test_gates_at_zero_make_fused_equal_dual(layout):
    model = tiny()
    share_cls_and_norm(model)
    video, ids, mask = make_batch()
    with torch.no_grad():
        dual_states = model.video_lower(video, cls="dual")
        text_states = model.text_lower(ids, mask)
        fused = model.fused_from_lower(model.video_lower(video, cls=layout), text_states)
        dual_tokens = model.video.run(dual_states.tokens, 4, model.video_split, model.cfg.video.depth)
        dual_text = model.text.run(text_states.hidden, mask, model.text_split, model.cfg.text.layers)
    torch.testing.assert_close(fused.video_tokens, dual_tokens, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused.video_cls, model.video.norm(dual_tokens[:, 0]), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused.text_hidden, dual_text, atol=1e-6, rtol=1e-5)


def test_gates_change_the_fused_path_only():
    model = tiny()
    video, ids, mask = make_batch()
    with torch.no_grad():
        vs, ts = model.video_lower(video), model.text_lower(ids, mask)
        before_dual = model.dual_from_lower(vs, ts)
        before = model.fused_from_lower(vs, ts)
        for name, p in model.named_parameters():
            if name.endswith("cross_attn.gate"):
                p.fill_(0.7)
        after_dual = model.dual_from_lower(vs, ts)
        after = model.fused_from_lower(vs, ts)
    for x, y in zip(before_dual, after_dual):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert (before.video_cls - after.video_cls).abs().max() > 1e-3
    assert (before.text_hidden - after.text_hidden).abs().max() > 1e-3
    # text padding is masked from the video side: changing padded tokens leaves the fused video unchanged
    ids2 = ids.clone()
    ids2[~mask.bool()] = 7
    with torch.no_grad():
        again = model.fused_from_lower(vs, model.text_lower(ids2, mask))
    torch.testing.assert_close(again.video_cls, after.video_cls, atol=1e-6, rtol=1e-5)


def test_carried_fused_cls_leaves_the_dual_path_exact():
    """In the "both" layout no patch sees the fused CLS: patches and dual CLS equal the dual-only run."""
    model = tiny()
    video, _, _ = make_batch()
    with torch.no_grad():
        both = model.video_lower(video, cls="both")
        dual = model.video_lower(video, cls="dual")
        fused = model.video_lower(video, cls="fused")
    torch.testing.assert_close(both.with_cls("dual"), dual.tokens, atol=1e-6, rtol=1e-5)
    # the fused CLS token differs from the dual one, so the release-exact patches differ from the dual ones
    assert (fused.tokens[:, 1:] - dual.tokens[:, 1:]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="cls='fused'"):
        dual.with_cls("fused")


def test_select_repairs_rows():
    model = tiny()
    video, ids, mask = make_batch()
    index = torch.tensor([2, 0, 0])
    with torch.no_grad():
        vs, ts = model.video_lower(video), model.text_lower(ids, mask)
        picked = model.vtm_logits(model.fused_from_lower(vs.select(index), ts))
        direct = model.vtm_logits(model.fused_from_lower(model.video_lower(video[index]), ts))
    torch.testing.assert_close(picked, direct, atol=1e-6, rtol=1e-5)


def loss_and_grads(model, video, ids, mask):
    """Loss, parameter gradients, and the number of elements autograd kept for backward."""
    torch.manual_seed(5)  # dropout draws must match between the two runs
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        vs, ts = model.video_lower(video), model.text_lower(ids, mask)
        v, t = model.dual_from_lower(vs, ts)
        fused = model.fused_from_lower(vs, ts)
        loss = (v @ t.T).logsumexp(-1).sum() + model.vtm_logits(fused).sum() + model.mlm_logits(fused).square().mean()
    grads = torch.autograd.grad(loss, [p for p in model.parameters()], allow_unused=True)
    return loss.detach(), grads, sum(saved)


def test_gradient_checkpointing_leaves_outputs_and_grads_unchanged():
    model = tiny().train()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("cross_attn.gate"):
                p.fill_(0.5)
    video, ids, mask = make_batch(b=2)
    loss_plain, grads_plain, saved_plain = loss_and_grads(model, video, ids, mask)
    model.set_grad_checkpointing(True)
    loss_ckpt, grads_ckpt, saved_ckpt = loss_and_grads(model, video, ids, mask)
    assert saved_ckpt < saved_plain / 2  # the blocks really were checkpointed
    torch.testing.assert_close(loss_ckpt, loss_plain, rtol=0, atol=0)
    assert sum(g is not None for g in grads_plain) == sum(g is not None for g in grads_ckpt) > 0
    for (name, _), a, b in zip(model.named_parameters(), grads_plain, grads_ckpt):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7, msg=name)


def test_checkpointing_the_lowest_blocks_recomputes_only_those():
    model = tiny().train()
    video, ids, mask = make_batch(b=2)
    loss_plain, grads_plain, _ = loss_and_grads(model, video, ids, mask)
    model.set_grad_checkpointing(True, blocks=1)
    calls: dict[str, int] = {}

    def counted(forward, key):  # module hooks do not fire in checkpoint recomputation; forward itself does
        def run(*args, **kwargs):
            calls[key] = calls.get(key, 0) + 1
            return forward(*args, **kwargs)
        return run

    towers = {"video": model.video.blocks, "text": model.text.encoder.layer}
    for name, tower in towers.items():
        for i, block in enumerate(tower):
            block.forward = counted(block.forward, f"{name}.{i}")
    loss_ckpt, grads_ckpt, _ = loss_and_grads(model, video, ids, mask)
    torch.testing.assert_close(loss_ckpt, loss_plain, rtol=0, atol=0)
    for a, b in zip(grads_plain, grads_ckpt):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    # Block 0 of each tower runs its forward again in the backward; block 1 does not.
    assert calls["video.0"] == 2 * calls["video.1"] and calls["text.0"] == 2 * calls["text.1"]
    with pytest.raises(ValueError, match="blocks must be >= 0"):
        model.set_grad_checkpointing(True, blocks=-1)
