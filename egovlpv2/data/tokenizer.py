"""Text tokenizers: a local Hugging Face directory, or a small byte-level BPE built from a corpus."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from egovlpv2.errors import MissingPathError

# RoBERTa's special tokens in RoBERTa's id order (<mask> follows them here instead of ending the vocab).
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def load_tokenizer(path: str | Path):
    """Load a Hugging Face tokenizer from a local directory (no network)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise MissingPathError(f"tokenizer directory not found: {path}")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def build_bpe_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 512):
    """Train a byte-level BPE on ``texts`` and save it as a RoBERTa-compatible tokenizer directory."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaTokenizerFast

    if vocab_size <= 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size {vocab_size} leaves no room for merges beyond the 256 bytes")
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=2,
                            special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    bpe.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")))
    tok = RobertaTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                               cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                               model_max_length=512)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out_dir))
    return tok
