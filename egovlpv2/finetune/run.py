"""`run_finetuning(cfg, ds_config)`: EK-100 MIR or Charades-Ego fine-tuning on the shared DeepSpeed loop.

Inputs are checked before any collective; the model starts from `init_checkpoint` (released or ours,
loaded strictly, temporal embedding resized to `data.num_frames`); the run resumes from its own `latest`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

import egovlpv2
from egovlpv2.config import ConfigError, save_config
from egovlpv2.finetune.config import FinetuneConfig
from egovlpv2.finetune.task import build_task, build_train_set, epoch_steps
from egovlpv2.storage import exists, join

log = logging.getLogger(__name__)


def check_inputs(cfg: FinetuneConfig) -> None:
    problems = []
    if not cfg.data.train_shards or not exists(join(cfg.data.train_shards, "manifest.json")):
        problems.append(f"data.train_shards={cfg.data.train_shards!r} holds no manifest.json (make_shards.py output)")
    if cfg.data.eval_shards and not exists(join(cfg.data.eval_shards, "manifest.json")):
        problems.append(f"data.eval_shards={cfg.data.eval_shards!r} holds no manifest.json")
    if not Path(cfg.data.tokenizer or "").is_dir():
        problems.append(f"data.tokenizer={cfg.data.tokenizer!r} is not a tokenizer directory")
    if cfg.init_checkpoint and not Path(cfg.init_checkpoint).is_file():
        problems.append(f"init_checkpoint={cfg.init_checkpoint!r} does not exist")
    if problems:
        raise ConfigError("fine-tuning cannot start: " + "; ".join(problems))


def build_model(cfg: FinetuneConfig):
    model = egovlpv2.create_model(cfg.model, num_frames=cfg.data.num_frames, checkpoint=cfg.init_checkpoint or None)
    if not cfg.init_checkpoint:
        log.warning("no init_checkpoint: fine-tuning from random weights")
    model.set_grad_checkpointing(cfg.train.grad_checkpointing, cfg.train.checkpoint_blocks)
    return model


def run_finetuning(cfg: FinetuneConfig, ds_config: str | dict):
    """Fine-tune with DeepSpeed; returns the loop's RunResult (evaluations by step included)."""
    from egovlpv2.data.tokenizer import load_tokenizer
    from egovlpv2.dist.env import init_distributed, select_device
    from egovlpv2.train.engine import build_engine, load_ds_config, reconcile_ds_config
    from egovlpv2.train.loop import LoopSettings, run_loop

    check_inputs(cfg)
    ds = load_ds_config(ds_config) if not isinstance(ds_config, dict) else dict(ds_config)
    env = init_distributed()
    device = select_device(env)
    torch.manual_seed(cfg.train.seed)
    ds = reconcile_ds_config(ds, cfg.data.batch_size, cfg.train.grad_accum_steps, env.world_size,
                             cfg.train.precision)
    train_set = build_train_set(cfg)
    total_steps = cfg.train.max_steps or max(1, round(cfg.train.epochs * epoch_steps(cfg, train_set, env.world_size)))
    tokenizer = load_tokenizer(cfg.data.tokenizer)
    model = build_model(cfg)
    task = build_task(cfg, model, tokenizer, env.rank, env.world_size, device, train_set)
    engine = build_engine(model, task.objective, ds, cfg.optim, total_steps)
    if env.rank == 0:
        Path(cfg.train.output_dir).mkdir(parents=True, exist_ok=True)
        save_config(cfg, Path(cfg.train.output_dir) / "config.yaml")
    settings = LoopSettings(
        output_dir=cfg.train.output_dir, total_steps=total_steps, grad_accum_steps=cfg.train.grad_accum_steps,
        checkpoint_every=cfg.checkpoint.every_steps, keep_last=cfg.checkpoint.keep_last,
        checkpoint_at_end=cfg.checkpoint.at_end, auto_resume=cfg.checkpoint.auto_resume,
        log_every=cfg.logging.every_steps, eval_every=cfg.eval.every_steps, eval_at_end=cfg.eval.at_end,
        stop_after_steps=cfg.train.stop_after_steps, tensorboard=cfg.logging.tensorboard,
        progress_bar=cfg.logging.progress_bar, allow_fresh_start_on_requeue=cfg.train.allow_fresh_start_on_requeue)
    return run_loop(engine, task, settings, device)
