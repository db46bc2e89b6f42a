"""MLM masking statistics, special tokens, split-independence, and the empty-rank loss."""
import pytest
import torch

from egovlpv2.losses.mlm import IGNORE, TokenizerInfo, mask_tokens, mlm_loss

TOK = TokenizerInfo(vocab_size=512, mask_token_id=4, pad_token_id=1, special_token_ids=(0, 1, 2, 3, 4))


def _texts(n=400, length=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 512, (n, length), generator=g)
    lengths = torch.randint(3, length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    ids[:, 0] = 0
    ids[torch.arange(n), lengths - 1] = 2
    ids[mask == 0] = 1
    return ids, mask


def test_masking_statistics_and_special_tokens():
    ids, mask = _texts()
    ordinary = mask.bool() & (ids > 4)
    selected = replaced = randomised = kept = 0
    for step in range(10):
        masked, labels = mask_tokens(ids, mask, TOK, range(len(ids)), seed=1, step=step)
        sel = labels != IGNORE
        assert not (sel & ~ordinary).any(), "a special or padding token was selected"
        assert torch.equal(masked[~sel], ids[~sel])
        assert torch.equal(labels[sel], ids[sel])
        assert not torch.isin(masked[sel & (masked != 4)], torch.tensor([0, 1, 2, 3])).any()
        selected += int(sel.sum())
        replaced += int((masked[sel] == 4).sum())
        changed = sel & (masked != 4) & (masked != ids)
        randomised += int(changed.sum())
        kept += int((sel & (masked == ids)).sum())
    total = 10 * int(ordinary.sum())
    assert selected / total == pytest.approx(0.15, abs=0.01)
    assert replaced / selected == pytest.approx(0.8, abs=0.02)
    # A random draw equals the original with probability 1/507, so "kept" is ~10% + a hair.
    assert randomised / selected == pytest.approx(0.1, abs=0.015)
    assert kept / selected == pytest.approx(0.1, abs=0.015)


def test_masks_do_not_depend_on_the_split():
    ids, mask = _texts(n=12)
    whole = mask_tokens(ids, mask, TOK, range(12), seed=3, step=5)
    parts = [mask_tokens(ids[a:b], mask[a:b], TOK, range(a, b), seed=3, step=5) for a, b in ((0, 5), (5, 12))]
    assert torch.equal(whole[0], torch.cat([p[0] for p in parts]))
    assert torch.equal(whole[1], torch.cat([p[1] for p in parts]))
    other_step = mask_tokens(ids, mask, TOK, range(12), seed=3, step=6)
    assert not torch.equal(whole[1], other_step[1])


def test_no_masked_token_gives_zero_loss_with_gradient():
    logits = torch.randn(0, 512, requires_grad=True)
    out = mlm_loss(logits, torch.zeros(0, dtype=torch.long))
    assert out.loss.item() == 0.0 and out.masked_tokens == 0 and not torch.isnan(out.accuracy)
    out.loss.backward()
    assert logits.grad is not None


def test_tokenizer_info_from_a_hugging_face_tokenizer(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(["#C C picks a bag", "#C C opens the door"] * 20, vocab_size=300,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>", mask_token="<mask>")
    info = TokenizerInfo.from_tokenizer(tok)
    assert (info.mask_token_id, info.pad_token_id) == (4, 1)
    assert set(info.special_token_ids) == {0, 1, 2, 3, 4} and info.vocab_size == len(tok)
    with pytest.raises(ValueError):
        TokenizerInfo(5, 4, 1, (0, 1, 2, 3, 4))
