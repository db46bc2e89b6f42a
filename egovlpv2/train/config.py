"""The pre-training recipe: one typed config for the model, data, objective and the training run.

A recipe is a YAML file (``egovlpv2/recipes/pretrain/*.yaml``) plus ``section.key=value`` overrides. ``model`` may
be a model recipe name (``egovlpv2-tiny``), a full mapping, or a mapping with ``base: <recipe name>`` whose
other keys override that recipe. The resolved config is written to ``<output_dir>/config.yaml``, so a run
directory always says exactly what it ran.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Iterable, Literal, Optional

from egovlpv2.config import (ConfigError, Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range,
                             Seconds, Seed, apply_overrides, from_dict, load_yaml, save_config)
from egovlpv2.data.config import DataConfig
from egovlpv2.losses.objective import LossConfig
from egovlpv2.model.config import ModelConfig
from egovlpv2.recipes import resolve_recipe


@dataclass
class OptimConfig:
    """AdamW with a warm-up + cosine schedule stepped every optimizer step (the paper's recipe, see train/optim.py)."""

    lr: PositiveFloat = 3e-5
    # Multiplier on `lr` for the cross-modal modules (cross-attention, gates, fused CLS/norm) and the heads.
    cross_modal_lr_mult: PositiveFloat = 4.0
    weight_decay: NonNegativeFloat = 0.01
    betas: tuple[Annotated[float, Range(0, 1, open_high=True)], Annotated[float, Range(0, 1, open_high=True)]] = \
        (0.9, 0.98)
    eps: PositiveFloat = 1e-8
    warmup_fraction: Annotated[float, Range(0, 1, open_high=True)] = 0.1
    # The cosine ends at lr * min_lr_ratio.
    min_lr_ratio: Fraction = 0.0


@dataclass
class TrainConfig:
    output_dir: str = "runs/pretrain"
    # The micro-batch is data.batch_size (anchors per rank; the partners double it on the device).
    grad_accum_steps: PositiveInt = 1
    # Length of the run: epochs over the shards (an epoch = every sample once as an anchor), or max_steps
    # optimizer steps when set (it wins).
    epochs: PositiveFloat = 20.0
    max_steps: Optional[PositiveInt] = None
    seed: Seed = 0
    grad_checkpointing: bool = True
    # With grad_checkpointing: checkpoint only the lowest N blocks of each tower (None: all of them). The
    # others keep their activations instead of recomputing them, for GPUs with memory to spare.
    checkpoint_blocks: Optional[NonNegativeInt] = None
    # None: the DeepSpeed JSON's precision. Set it to run one JSON at another precision (e.g. fp32 on a CPU
    # without bf16 units, where bf16 runs about 2x slower).
    precision: Optional[Literal["bf16", "fp16", "fp32"]] = None
    # Stop after this many steps of this process (for tests and trials); the schedule still spans max_steps.
    stop_after_steps: Optional[PositiveInt] = None
    # Fault handling (docs/faults.md). A collective waits this long before failing (a backstop for hangs
    # that the peer watchdog cannot see: every rank alive, heartbeating, and stuck).
    collective_timeout_s: Seconds = 600.0
    # A rank without a heartbeat this long is dead or hung; every other rank exits, naming it.
    peer_timeout_s: Seconds = 60.0
    # After a stop request (SIGTERM/SIGUSR1), a rank that cannot reach the next step boundary and save
    # within this long exits anyway (the last complete checkpoint stays in charge).
    stop_timeout_s: Seconds = 300.0
    # This many non-finite steps in a row (NaN/inf loss or grad norm, skipped updates) end the run with an error.
    max_nonfinite_steps: PositiveInt = 3
    # torch.compile: off, blocks (one compiled region per transformer block: fuses LayerNorm, GELU, residual
    # adds and the token regrouping into their neighbours) or full (one region per model method). Compiling
    # costs a minute or more once per process; worth it for long runs on a GPU (README "Speed").
    compile: Literal["off", "blocks", "full"] = "off"


@dataclass
class CheckpointConfig:
    every_steps: PositiveInt = 1000
    keep_last: PositiveInt = 3
    # Resume from <output_dir>/checkpoints/latest when it exists.
    auto_resume: bool = True
    # Also save at the end of the run.
    at_end: bool = True


@dataclass
class LoggingConfig:
    # One-line summary and TensorBoard scalars every N steps.
    every_steps: PositiveInt = 20
    tensorboard: bool = True
    progress_bar: bool = True


@dataclass
class EvalConfig:
    """EgoMCQ during pre-training: every N steps and at the end, when `egomcq_shards` is set."""

    egomcq_shards: Optional[str] = None
    every_steps: PositiveInt = 5000
    at_end: bool = True
    num_frames: Optional[PositiveInt] = None  # defaults to the model's frame count
    batch_size: PositiveInt = 8
    # Questions scored per evaluation (None: all); bounds the cost of evaluation during training.
    max_questions: Optional[PositiveInt] = None


@dataclass
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        # The loader must produce what the model expects; say which keys to change rather than fail in a matmul.
        pairs = [("data.num_frames", self.data.num_frames, "model.video.num_frames", self.model.video.num_frames),
                 ("data.img_size", self.data.img_size, "model.video.img_size", self.model.video.img_size)]
        for left, a, right, b in pairs:
            if a != b:
                raise ConfigError(f"{left}={a} but {right}={b}: they must agree")
        if self.eval.num_frames is not None and self.eval.num_frames > self.model.video.num_frames:
            raise ConfigError(f"eval.num_frames={self.eval.num_frames} exceeds model.video.num_frames="
                              f"{self.model.video.num_frames}; evaluate more frames on an export with egovlpv2-evaluate")
        if self.data.text_max_len > self.model.text.max_positions - 2:
            raise ConfigError(f"data.text_max_len={self.data.text_max_len} exceeds the model's "
                              f"{self.model.text.max_positions - 2} text positions")


def _merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _expand_model(data: dict, where: str) -> dict:
    """Replace a model recipe name (or ``base:`` reference) by the recipe's mapping."""
    model = data.get("model")
    if isinstance(model, str):
        model = {"base": model}
    if isinstance(model, dict) and "base" in model:
        rest = {k: v for k, v in model.items() if k != "base"}
        try:
            path = resolve_recipe("model", model["base"])
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not path.is_file():
            raise ConfigError(f"{where}: model recipe {model['base']!r} not found (looked for {path})")
        data = dict(data, model=_merge(load_yaml(path), rest))
    return data


def pretrain_config_from_dict(data: dict, where: str = "PretrainConfig") -> PretrainConfig:
    return from_dict(PretrainConfig, _expand_model(data, where), where)


def load_pretrain_config(recipe: str | Path, overrides: Iterable[str] = ()) -> PretrainConfig:
    """Load a recipe and apply ``key=value`` overrides; every error is a ConfigError naming the key."""
    path = resolve_recipe("pretrain", recipe)
    cfg = pretrain_config_from_dict(load_yaml(path), str(path))
    return apply_overrides(cfg, list(overrides))


def save_resolved(cfg: PretrainConfig, output_dir: str | Path) -> Path:
    path = Path(output_dir) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_config(cfg, path)
    return path


__all__ = [
    "CheckpointConfig", "EvalConfig", "LoggingConfig", "OptimConfig", "PretrainConfig", "TrainConfig",
    "load_pretrain_config", "pretrain_config_from_dict", "save_resolved",
]
