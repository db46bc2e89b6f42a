"""Random pre-training batches and token ids shared by the benchmark scripts.

Benchmarks time the step, not the loader: batches are random uint8 clips, random token ids framed like
RoBERTa's (``<s> ... </s>``), and sparse verb/noun multi-hots, so EgoNCE sees a few positives per row.
"""
from __future__ import annotations

import torch

from egovlpv2.losses import TokenizerInfo

# The special-token layout of the byte-level BPE tokenizers this project builds: <s>=0, <pad>=1, </s>=2,
# <unk>=3, <mask>=4; ordinary tokens start at 5.
FIRST_ORDINARY_TOKEN = 5


def token_info(vocab_size: int) -> TokenizerInfo:
    return TokenizerInfo(vocab_size, mask_token_id=4, pad_token_id=1, special_token_ids=(0, 1, 2, 3, 4))


def random_pretrain_batch(n: int, frames: int, img_size: int, vocab_size: int, text_len: int, seed: int = 0,
                          device: torch.device | str = "cpu") -> dict:
    """``n`` clip-text pairs in the loader's batch layout (uint8 video, long ids, float multi-hots)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(FIRST_ORDINARY_TOKEN, vocab_size, (n, text_len), generator=g)
    ids[:, 0], ids[:, -1] = 0, 2
    batch = {
        "video": torch.randint(0, 256, (n, frames, 3, img_size, img_size), dtype=torch.uint8, generator=g),
        "input_ids": ids,
        "attention_mask": torch.ones(n, text_len, dtype=torch.long),
        "verb": (torch.rand(n, 118, generator=g) < 0.02).float(),
        "noun": (torch.rand(n, 582, generator=g) < 0.004).float(),
    }
    return {k: t.to(device) for k, t in batch.items()}
