"""Data: EgoClip metadata, video shards, the streaming pre-training loader and evaluation readers."""
from egovlpv2.data.config import DataConfig
from egovlpv2.data.pipeline import PretrainLoader, batches_per_epoch, build_pretrain_loader
from egovlpv2.data.transforms import normalize_video

__all__ = ["DataConfig", "PretrainLoader", "batches_per_epoch", "build_pretrain_loader", "normalize_video"]
