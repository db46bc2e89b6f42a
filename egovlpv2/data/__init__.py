"""Data: EgoClip metadata, video shards, the streaming pre-training loader and evaluation readers.

The loader names are imported lazily, so shard tools and their worker processes do not load torch.
"""
from egovlpv2.data.config import DataConfig

_LAZY = {"PretrainLoader": "egovlpv2.data.pipeline", "batches_per_epoch": "egovlpv2.data.pipeline",
         "build_pretrain_loader": "egovlpv2.data.pipeline", "normalize_video": "egovlpv2.data.transforms"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DataConfig", *_LAZY]
