"""``run_pretraining(cfg, ds_config)``: the whole pre-training job, for any launcher.

Everything that can be wrong with the inputs (recipe, shard directory, tokenizer, weights, DeepSpeed
config) is checked before the first collective, on every rank, so a mistake is a clear error on every rank
instead of a hang at the first all-reduce.
"""
from __future__ import annotations

import logging
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from egovlpv2.config import ConfigError
from egovlpv2.data import batches_per_epoch, build_pretrain_loader
from egovlpv2.data.manifest import ShardManifest
from egovlpv2.data.pipeline import pretrain_manifest, reshard_loader_states
from egovlpv2.data.position import SHARD_CHANGE_OPTION, SHARDS, changed_inputs, describe_changes, position_inputs
from egovlpv2.data.tokenizer import load_tokenizer
from egovlpv2.dist.collectives import gather_objects
from egovlpv2.dist.env import detect
from egovlpv2.errors import MissingPathError
from egovlpv2.model.config import ModelConfig
from egovlpv2.model.flops import forward_flops, mlm_head_flops
from egovlpv2.storage import exists, join
from egovlpv2.train.compile import start_compile_clock
from egovlpv2.train.config import PretrainConfig, save_resolved
from egovlpv2.train.elastic_state import steps_for_epochs
from egovlpv2.train.engine import build_engine, load_ds_config, reconcile_ds_config
from egovlpv2.train.grad_cache import deepspeed_grad_cache_step
from egovlpv2.train.loop import LoopComponents, RunResult, accumulate_step, run_loop
from egovlpv2.train.monitor import BestEffortFileHandler
from egovlpv2.train.run_setup import run_setup

log = logging.getLogger(__name__)


class EpochSource:
    """The loop's DataSource over per-epoch pre-training loaders; the state is (epoch, loader position).

    ``state`` may also be ``{"resharded_from": [every old rank's state]}`` (a resume at another world size,
    see egovlpv2.train.elastic_state), and a state saved with another ``data.num_workers`` is re-dealt the same way:
    the rest of the epoch goes to the new ranks and workers (egovlpv2.data.elastic_epoch). A resumed state carries
    ``inputs``, what its position depended on (egovlpv2.data.position): any change but the shard set (batch
    size, seed, sampling) is re-dealt too; a changed shard set is refused, or starts the next epoch when
    ``data.on_shard_change=next_epoch``. ``manifest``: that of ``cfg.shards``, read once by the caller.
    """

    def __init__(self, cfg, manifest: ShardManifest, rank: int, world_size: int, state: Optional[dict],
                 inputs: Optional[dict] = None):
        self.cfg, self.manifest, self.rank, self.world_size = cfg, manifest, rank, world_size
        self.inputs = inputs if inputs is not None else position_inputs(cfg, manifest.shard_counts())
        state = self._resume(state) if state is not None else None
        state = state or {"epoch": 0, "loader": None, "past_skips": {}}
        self.epoch = state["epoch"]
        self.past_skips = Counter(state["past_skips"])
        self.loader = build_pretrain_loader(cfg, rank, world_size, self.epoch, state["loader"], manifest)

    def _resume(self, state: dict) -> Optional[dict]:
        changes = changed_inputs(state.get("inputs"), self.inputs)
        if SHARDS in changes and self.cfg.on_shard_change == "refuse":
            raise ConfigError(f"the checkpoint's data position belongs to other shards ({describe_changes(changes)}), "
                              f"so its epoch cannot go on over these; set {SHARD_CHANGE_OPTION} to start the next "
                              "epoch on them")
        if "resharded_from" in state:
            states = state["resharded_from"]
        elif changes or (state["loader"] and state["loader"]["num_workers"] != max(1, self.cfg.num_workers)):
            states = gather_objects(state)  # every rank sees the same change: all take part
        else:
            return state
        if changes:
            log.warning("data inputs changed since the checkpoint: %s; %s", describe_changes(changes),
                        "the next epoch starts on the new shards" if SHARDS in changes
                        else "the rest of the epoch is re-dealt, each sample still once")
        return self._next_epoch_state(states) if SHARDS in changes else self._reshard(states)

    def _carried_skips(self, states: list) -> dict:
        """Each old rank's skip counts go to one new rank, so their sum over ranks stays."""
        past = Counter()
        for old_rank, s in enumerate(states):
            if s is not None and old_rank % self.world_size == self.rank:
                past.update(s["past_skips"])
                past.update(s["loader"]["skips"] if s["loader"] else {})
        return dict(past)

    def _reshard(self, states: list) -> Optional[dict]:
        """This rank's state from every old rank's: the epoch goes on, the loader re-deals the rest of it."""
        if all(s is None for s in states):
            return None
        loader = reshard_loader_states(self.cfg, self.manifest, [s["loader"] for s in states])
        return {"epoch": states[0]["epoch"], "loader": loader, "past_skips": self._carried_skips(states)}

    def _next_epoch_state(self, states: list) -> Optional[dict]:
        if all(s is None for s in states):
            return None
        return {"epoch": states[0]["epoch"] + 1, "loader": None, "past_skips": self._carried_skips(states)}

    def _next_epoch(self) -> None:
        self.past_skips.update(self.loader.skip_counts())
        self.epoch += 1
        self.loader = build_pretrain_loader(self.cfg, self.rank, self.world_size, self.epoch, manifest=self.manifest)

    def __iter__(self):
        if self.loader.batches_done >= len(self.loader):
            self._next_epoch()
        yield from self.loader
        self._next_epoch()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "loader": self.loader.state_dict(), "past_skips": dict(self.past_skips)}

    def skip_counts(self) -> dict[str, int]:
        total = Counter(self.past_skips)
        total.update(self.loader.skip_counts())
        return dict(total)


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors to ``device`` (video stays uint8: the objective normalises it there)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def pretrain_step_flops(cfg: ModelConfig, pairs: int, text_len: int, mlm_probability: float = 0.15) -> float:
    """Model FLOPs of one training step (forward + backward = 3x forward) on ``pairs`` clip-text pairs.

    Per pair: the dual pass (both towers, projectors), the MLM pass (masked text's lower layers again, then
    the fused upper layers over the reused video states) and the VTM pass (fused upper layers), plus the
    MLM head on the selected tokens. Activation recomputation is not counted (this is MFU, not HFU).
    """
    dual = forward_flops(cfg, mode="dual", text_len=text_len)
    fused = forward_flops(cfg, mode="fusion", text_len=text_len)
    upper = cfg.fusion_layers / cfg.video.depth
    fused_upper = upper * fused.video + (cfg.fusion_layers / cfg.text.layers) * fused.text + fused.fusion
    text_lower = (1 - cfg.fusion_layers / cfg.text.layers) * fused.text
    per_pair = dual.total + (text_lower + fused_upper) + (fused_upper + fused.heads)
    per_pair += mlm_head_flops(cfg, max(1, round(mlm_probability * text_len)))
    return 3.0 * pairs * per_pair


def check_inputs(cfg: PretrainConfig, ds_config_path: "str | Path | dict") -> dict:
    """Fail fast, before any collective, on inputs that would otherwise fail later or hang; returns the
    DeepSpeed config reconciled with the recipe."""
    ds = load_ds_config(ds_config_path) if not isinstance(ds_config_path, dict) else ds_config_path
    shards = cfg.data.shards
    if not shards:
        raise ConfigError("data.shards is not set: point it at a shard directory or URL (egovlpv2-make-shards)")
    if not exists(join(shards, "manifest.json")):
        raise MissingPathError(f"data.shards={shards}: no manifest.json there; write shards with "
                                "egovlpv2-make-shards --task egoclip")
    if not cfg.data.tokenizer or not Path(cfg.data.tokenizer).is_dir():
        raise MissingPathError(f"data.tokenizer={cfg.data.tokenizer!r} is not a directory (a local Hugging Face "
                                "tokenizer: roberta-base's, or one from egovlpv2.data.tokenizer.build_bpe_tokenizer)")
    for key in ("vision_init", "text_init", "checkpoint"):
        path = getattr(cfg.model, key)
        if path and not Path(path).exists():
            raise MissingPathError(f"model.{key}={path} does not exist")
    if cfg.eval.egomcq_shards and not exists(join(cfg.eval.egomcq_shards, "manifest.json")):
        raise MissingPathError(f"eval.egomcq_shards={cfg.eval.egomcq_shards}: no manifest.json there")
    world_size = detect().world_size  # read from the launcher's variables; no group needed yet
    return reconcile_ds_config(ds, cfg.data.batch_size, cfg.train.grad_accum_steps, world_size, cfg.train.precision)


def setup_logging(output_dir: Path, rank: int) -> None:
    """INFO on rank 0 (stderr and <output_dir>/train.log), warnings only elsewhere."""
    root = logging.getLogger()
    if getattr(root, "_egovlpv2_configured", False):
        return
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    fmt = logging.Formatter(f"%(asctime)s [rank{rank}] %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    handlers = [logging.StreamHandler(sys.stderr)]
    if rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(BestEffortFileHandler(output_dir / "train.log"))
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root._egovlpv2_configured = True  # type: ignore[attr-defined]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_pretraining(cfg: PretrainConfig, ds_config: "str | Path | dict") -> RunResult:
    """Pre-train per ``cfg`` with DeepSpeed; resumes from ``<train.output_dir>/checkpoints/latest``.

    Works inside an already-initialised process group (submitit, tests) or initialises one from the
    launcher's variables. Returns when the run finished, a stop was requested (saved) or
    ``train.stop_after_steps`` steps ran.
    """
    import egovlpv2
    from egovlpv2.losses import PretrainObjective, TokenizerInfo

    ds = check_inputs(cfg, ds_config)
    tokenizer = load_tokenizer(cfg.data.tokenizer)
    if len(tokenizer) > cfg.model.text.vocab_size:
        raise ConfigError(f"the tokenizer has {len(tokenizer)} tokens but model.text.vocab_size="
                          f"{cfg.model.text.vocab_size}")
    setup = run_setup(cfg)
    env, device = setup.start_distributed()
    out = Path(cfg.train.output_dir)
    setup_logging(out, env.rank)
    manifest = pretrain_manifest(cfg.data)
    per_epoch = batches_per_epoch(manifest, cfg.data, env.world_size) // cfg.train.grad_accum_steps
    if per_epoch < 1:
        raise ConfigError(f"an epoch holds fewer than {cfg.train.grad_accum_steps} batches per rank")
    global_batch = cfg.data.batch_size * cfg.train.grad_accum_steps * env.world_size
    total = cfg.train.max_steps or steps_for_epochs(out / "checkpoints", env.world_size, cfg.train.epochs, per_epoch,
                                                    global_batch)
    if env.rank == 0:
        save_resolved(cfg, out)
    log.info("world size %d (%s), device %s, %d steps (%d per epoch), global batch %d anchors",
             env.world_size, env.source, device, total, per_epoch,
             global_batch)

    seed_everything(cfg.train.seed)  # identical initial weights on every rank
    clock = start_compile_clock(setup.compile, out)
    model = egovlpv2.create_model(cfg.model, compile=setup.compile)
    model.set_grad_checkpointing(cfg.train.grad_checkpointing, cfg.train.checkpoint_blocks)
    objective = PretrainObjective(model, cfg.loss, TokenizerInfo.from_tokenizer(tokenizer))
    engine = build_engine(model, objective, ds, cfg.optim, total, setup.compile)
    seed_everything(cfg.train.seed + 1 + env.rank)  # dropout differs per rank (restored on resume)

    evaluate = None
    if cfg.eval.egomcq_shards:
        from egovlpv2.train.egomcq_hook import EgoMCQHook

        evaluate = EgoMCQHook(cfg, tokenizer, device, ds)
        if clock is not None:
            evaluate = clock.logged(evaluate, "evaluation")
    # One EgoNCE over the whole step (gradient caching) or one per micro-batch (DeepSpeed's accumulation).
    step_fn = (deepspeed_grad_cache_step if cfg.loss.contrastive_batch == "global" and cfg.train.grad_accum_steps > 1
               else accumulate_step)
    inputs = position_inputs(cfg.data, manifest.shard_counts())
    components = LoopComponents(
        objective=objective,
        make_loader=lambda state: EpochSource(cfg.data, manifest, env.rank, env.world_size, state, inputs),
        prepare=to_device,
        count_clips=lambda batch: int(batch["video"].shape[0]),
        evaluate=evaluate,
        step_fn=step_fn if clock is None else clock.logged(step_fn, "a training step"),
        name="egomcq",
        data_inputs=inputs,
    )
    flops = pretrain_step_flops(cfg.model, 2 * cfg.data.batch_size * cfg.train.grad_accum_steps,
                                cfg.data.text_max_len, cfg.loss.mlm_probability)
    settings = setup.loop_settings(total, cfg.eval.every_steps, cfg.eval.at_end, flops)
    try:
        return run_loop(engine, components, settings, device)
    finally:
        if clock is not None:
            log.info("compile: %.1f s in %d graph compilations in this process", clock.seconds, clock.compiles)
            clock.close()
