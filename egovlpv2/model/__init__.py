"""The EgoVLPv2 model: TimeSformer + RoBERTa with fusion in the backbone, its heads and weight loading."""
from egovlpv2.model.config import ModelConfig, TextConfig, VideoConfig, resolve_model_config
from egovlpv2.model.egovlpv2 import EgoVLPv2
from egovlpv2.model.factory import create_model
from egovlpv2.model.card import Provenance
from egovlpv2.model.loading import CheckpointError
from egovlpv2.model.states import FusedOutput, TextStates, VideoStates
from egovlpv2.model.video_encoder import EgoVLPv2VideoEncoder

__all__ = [
    "CheckpointError", "EgoVLPv2", "EgoVLPv2VideoEncoder", "FusedOutput", "ModelConfig", "Provenance", "TextConfig",
    "TextStates", "VideoConfig", "VideoStates", "create_model", "resolve_model_config",
]
