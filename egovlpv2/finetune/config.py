"""The fine-tuning recipe: task, model and initial weights, data, loss, and the shared training sections."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Optional

from egovlpv2.config import (Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Seconds, Seed,
                             load_config)
from egovlpv2.data.config import CropScale, check_crop_scale
from egovlpv2.recipes import resolve_recipe
from egovlpv2.train.config import CheckpointConfig, LoggingConfig, OptimConfig, TrainConfig


@dataclass
class FinetuneDataConfig:
    # Training shards: `make_shards.py --task epic_mir` on the train csv, or `--task charades_ego`.
    train_shards: str = ""
    # Evaluation shards of the same task (test split); empty: no evaluation during fine-tuning.
    eval_shards: str = ""
    tokenizer: str = ""
    # Clips per rank per micro-step.
    batch_size: PositiveInt = 16
    num_frames: PositiveInt = 16
    img_size: PositiveInt = 224
    text_max_len: PositiveInt = 32
    num_workers: NonNegativeInt = 4
    crop_scale: CropScale = field(default_factory=lambda: [0.5, 1.0])
    hflip: bool = True
    decode_backend: Literal["auto", "decord", "pyav"] = "auto"
    decode_timeout_s: Seconds = 10.0
    eval_resize: PositiveInt = 256
    # EK-100 MIR: the train relevancy pickle (default: the one recorded in the train shards' manifest) and the
    # relevancy above which a caption may be sampled for a clip.
    relevancy: str = ""
    relevancy_threshold: Fraction = 0.1
    seed: Seed = 0
    # A resume whose training set (shards, samples per shard) or seed differs from the checkpoint's cannot go
    # on with the saved epoch, which was shuffled from those: refuse, or start the next epoch with the new ones
    # (the rest of the saved epoch is dropped). Another batch size or world size goes on exactly
    # (egovlpv2.finetune.loader).
    on_shard_change: Literal["refuse", "next_epoch"] = "refuse"

    def __post_init__(self) -> None:
        check_crop_scale(self.crop_scale, "data.crop_scale")


@dataclass
class FinetuneLossConfig:
    margin: NonNegativeFloat = 0.2          # EK-100 MIR max-margin ranking
    temperature: PositiveFloat = 0.05    # Charades-Ego InfoNCE


@dataclass
class FinetuneEvalConfig:
    every_steps: Optional[PositiveInt] = None
    at_end: bool = True
    batch_size: PositiveInt = 16
    limit: Optional[PositiveInt] = None
    allow_missing: bool = False


@dataclass
class FinetuneConfig:
    task: Literal["epic_mir", "charades_ego"] = "epic_mir"
    # A model recipe name or YAML path; the frame count comes from data.num_frames.
    model: str = "egovlpv2-base-smallproj"
    # Weights to start from (released EgoVLPv2*.pth or our export); loaded strictly.
    init_checkpoint: str = ""
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    loss: FinetuneLossConfig = field(default_factory=FinetuneLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # train.epochs counts passes over the training shards; train.max_steps, when set, wins.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(output_dir="runs/finetune"))
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    eval: FinetuneEvalConfig = field(default_factory=FinetuneEvalConfig)


def load_finetune_config(recipe: str | Path, overrides: Iterable[str] = ()) -> FinetuneConfig:
    """A recipe path or a shipped name (`epic_mir`, `charades_ego`), plus `key=value` overrides."""
    return load_config(FinetuneConfig, resolve_recipe("finetune", recipe), overrides)
