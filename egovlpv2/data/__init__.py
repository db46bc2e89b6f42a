"""Data at training and evaluation time: the shard manifest, the streaming pre-training loader, evaluation readers.

The loader names are imported lazily, so importing the config (or the manifest reader) does not load torch.
Writing the shards is egovlpv2.shards.
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
