"""Pre-training objectives: EgoNCE, MLM, VTM and the whole-step PretrainObjective."""
from egovlpv2.losses.mlm import TokenizerInfo
from egovlpv2.losses.objective import LossConfig, PretrainObjective

__all__ = ["LossConfig", "PretrainObjective", "TokenizerInfo"]
