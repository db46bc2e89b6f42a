"""Fine-tuning on EK-100 MIR or Charades-Ego on the shared DeepSpeed loop: `finetune(task, config, overrides,
deepspeed)` (what egovlpv2-finetune calls) loads the recipe and runs `run_finetuning(cfg, ds_config)`.

The shared sections (train, checkpoint, logging) reach the loop and the process group as for pre-training
(egovlpv2.train.run_setup).

Inputs are checked before any collective; the model starts from `init_checkpoint` (released or ours,
loaded strictly, temporal embedding resized to `data.num_frames`); the run resumes from its own `latest`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Optional, Sequence

import torch

import egovlpv2
from egovlpv2.config import ConfigError, save_config
from egovlpv2.data.manifest import ShardManifest
from egovlpv2.errors import UsageError
from egovlpv2.eval.eval_samples import MissingSamplesError, check_missing_samples
from egovlpv2.finetune.config import FinetuneConfig, load_finetune_config
from egovlpv2.model.config import resolve_model_config
from egovlpv2.model.compile import CompileMode
from egovlpv2.train.loop import RunResult
from egovlpv2.finetune.components import build_loop_components, build_train_set, epoch_steps
from egovlpv2.storage import exists, join

log = logging.getLogger(__name__)


def check_inputs(cfg: FinetuneConfig) -> ShardManifest:
    """Every input problem at once, as one user error, before any collective; returns the training shards'
    manifest (read here once, for the training set too)."""
    problems, manifests = [], {}
    for key in ("train_shards", "eval_shards"):
        location = getattr(cfg.data, key)
        if not location and key == "eval_shards":
            continue
        if not location or not exists(join(location, "manifest.json")):
            problems.append(f"data.{key}={location!r} holds no manifest.json (make_shards.py output)")
            continue
        manifests[key] = ShardManifest.read(location)
        held = manifests[key].task
        if held != cfg.task:
            problems.append(f"data.{key}={location!r} holds {held} shards but task={cfg.task}")
        elif key == "eval_shards":
            try:
                check_missing_samples(manifests[key], cfg.eval.allow_missing)
            except MissingSamplesError as exc:
                problems.append(f"{exc} (here: eval.allow_missing=true)")
    if not Path(cfg.data.tokenizer or "").is_dir():
        problems.append(f"data.tokenizer={cfg.data.tokenizer!r} is not a tokenizer directory")
    if cfg.init_checkpoint and not Path(cfg.init_checkpoint).is_file():
        problems.append(f"init_checkpoint={cfg.init_checkpoint!r} does not exist")
    if cfg.data.relevancy and not exists(cfg.data.relevancy):
        problems.append(f"data.relevancy={cfg.data.relevancy!r} does not exist")
    frames = resolve_model_config(cfg.model).video.img_size
    if cfg.data.img_size != frames:
        problems.append(f"data.img_size={cfg.data.img_size} but the model {cfg.model} takes {frames}x{frames} frames")
    if problems:
        raise ConfigError("fine-tuning cannot start: " + "; ".join(problems))
    return manifests["train_shards"]


def build_model(cfg: FinetuneConfig, compile_mode: CompileMode = CompileMode.OFF):
    model = egovlpv2.create_model(cfg.model, compile=compile_mode, num_frames=cfg.data.num_frames,
                                  checkpoint=cfg.init_checkpoint or None)
    if not cfg.init_checkpoint:
        log.warning("no init_checkpoint: fine-tuning from random weights")
    model.set_grad_checkpointing(cfg.train.grad_checkpointing, cfg.train.checkpoint_blocks)
    return model


def run_finetuning(cfg: FinetuneConfig, ds_config: str | dict) -> RunResult:
    """Fine-tune with DeepSpeed; returns the loop's RunResult (evaluations by step included)."""
    from egovlpv2.data.tokenizer import load_tokenizer
    from egovlpv2.train.compile import start_compile_clock
    from egovlpv2.train.elastic_state import steps_for_epochs
    from egovlpv2.train.engine import build_engine, load_ds_config, reconcile_ds_config
    from egovlpv2.train.loop import run_loop
    from egovlpv2.train.run_setup import run_setup

    train_shards = check_inputs(cfg)
    ds = load_ds_config(ds_config) if not isinstance(ds_config, dict) else dict(ds_config)
    setup = run_setup(cfg)
    env, device = setup.start_distributed()
    torch.manual_seed(cfg.train.seed)
    ds = reconcile_ds_config(ds, cfg.data.batch_size, cfg.train.grad_accum_steps, env.world_size,
                             cfg.train.precision)
    train_set = build_train_set(cfg, train_shards)
    total_steps = cfg.train.max_steps or steps_for_epochs(
        Path(cfg.train.output_dir) / "checkpoints", env.world_size, cfg.train.epochs,
        epoch_steps(cfg, train_set, env.world_size), cfg.data.batch_size * cfg.train.grad_accum_steps * env.world_size)
    tokenizer = load_tokenizer(cfg.data.tokenizer)
    clock = start_compile_clock(setup.compile, cfg.train.output_dir)
    model = build_model(cfg, setup.compile)
    components = build_loop_components(cfg, model, tokenizer, env.rank, env.world_size, device, train_set)
    if clock is not None:
        components.step_fn = clock.logged(components.step_fn, "a training step")
    engine = build_engine(model, components.objective, ds, cfg.optim, total_steps, setup.compile)
    if env.rank == 0:
        Path(cfg.train.output_dir).mkdir(parents=True, exist_ok=True)
        save_config(cfg, Path(cfg.train.output_dir) / "config.yaml")
    try:
        settings = setup.loop_settings(total_steps, cfg.eval.every_steps, cfg.eval.at_end)
        return run_loop(engine, components, settings, device)
    finally:
        if clock is not None:
            clock.close()


def load_task_config(task: str, config: Optional[str | Path] = None, overrides: Sequence[str] = ()) -> FinetuneConfig:
    """The recipe ``config`` (default: the task's shipped one) with ``overrides``; it must be for ``task``."""
    cfg = load_finetune_config(config or task, overrides)
    if cfg.task != task:
        raise UsageError(f"--task {task} but the recipe is for {cfg.task}")
    return cfg


def finetune(task: Literal["epic_mir", "charades_ego"], config: Optional[str | Path] = None,
             overrides: Sequence[str] = (), deepspeed: str | dict = "zero2") -> RunResult:
    """Fine-tune on ``task`` with ``config`` (a recipe path or shipped name; default: the task's shipped recipe)
    and ``key=value`` overrides; SIGUSR1/SIGTERM save at the next step and return with ``stopped`` set."""
    from egovlpv2.dist.signals import install_stop_handlers

    cfg = load_task_config(task, config, overrides)
    install_stop_handlers()
    return run_finetuning(cfg, deepspeed)
