"""Fine-tuning as `LoopComponents` of the shared training loop: datasets from shards, the resumable loader
(egovlpv2.finetune.loader) with what its position depends on, the objective, and the benchmark evaluation as
the loop's eval hook."""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from egovlpv2.data.eval_data import epic_mir_relevancy_path, load_charades_classes, load_epic_mir_captions
from egovlpv2.data.manifest import ShardManifest
from egovlpv2.data.random_access import ClipDecoder, index_shards, read_sample
from egovlpv2.data.transforms import prepare_video
from egovlpv2.eval.benchmarks import evaluate_task, headline
from egovlpv2.eval.epic_mir import load_relevancy
from egovlpv2.finetune.config import FinetuneConfig
from egovlpv2.finetune.datasets import CharadesEgoTrainSet, EpicMirTrainSet, TextCollator
from egovlpv2.finetune.loader import FinetuneLoader, position_inputs
from egovlpv2.finetune.objectives import CharadesEgoObjective, EpicMirObjective
from egovlpv2.train.loop import LoopComponents


def _metas(refs) -> list[dict]:
    return [read_sample(ref, members=("json",))[0] for ref in refs]


def build_train_set(cfg: FinetuneConfig, shards: Optional[ShardManifest] = None):
    """The task's training dataset over `cfg.data.train_shards` (``shards``: their manifest, when already read)."""
    # Read once, for the samples and what lies beside them.
    shards = shards if shards is not None else ShardManifest.read(cfg.data.train_shards)
    refs = index_shards(shards, cfg.task)
    decoder = ClipDecoder.from_config(cfg.data, train=True)
    metas = _metas(refs)
    if cfg.task == "charades_ego":
        return CharadesEgoTrainSet(refs, decoder, load_charades_classes(shards), [m["labels"] for m in metas],
                                   cfg.data.seed)
    relevancy = load_relevancy(cfg.data.relevancy or epic_mir_relevancy_path(shards))
    captions = load_epic_mir_captions(shards)
    if relevancy.shape[1] != len(captions):
        # The EK-100 train matrix is clip x clip: column j is the narration of csv row j.
        if relevancy.shape[1] != shards.fields.get("num_rows"):
            raise ValueError(f"relevancy has {relevancy.shape[1]} columns: neither the {len(captions)} unique "
                             f"captions nor the csv rows of {shards.location}")
        by_row = {int(m["row"]): m["text"] for m in metas}
        captions = [by_row.get(j) for j in range(relevancy.shape[1])]
    return EpicMirTrainSet(refs, decoder, relevancy, captions, cfg.data.relevancy_threshold, cfg.data.seed)


def build_loop_components(cfg: FinetuneConfig, model, tokenizer, rank: int, world_size: int,
                          device: torch.device, train_set) -> LoopComponents:
    """The loop's components over ``train_set`` (:func:`build_train_set`): objective, loader factory, batch
    preparation and (with eval shards) evaluation."""
    inputs = position_inputs(train_set.shard_counts(), cfg.data.seed, cfg.data.batch_size)
    collate = TextCollator(tokenizer, cfg.data.text_max_len)
    if cfg.task == "epic_mir":
        objective = EpicMirObjective(model, cfg.loss.margin)
    else:
        objective = CharadesEgoObjective(model, cfg.loss.temperature)

    def make_loader(state):
        return FinetuneLoader(train_set, collate, cfg.data.batch_size, rank, world_size,
                              cfg.data.num_workers, cfg.data.seed, inputs, state, cfg.data.on_shard_change)

    def prepare(batch, dev):
        out = {k: (v.to(dev, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
        out["video"] = prepare_video(out["video"], model)
        return out

    evaluate = None
    if cfg.data.eval_shards:
        evaluate = _evaluation(cfg, tokenizer, device)
    return LoopComponents(objective=objective, make_loader=make_loader, prepare=prepare,
                          count_clips=lambda batch: int(batch["video"].shape[0]), evaluate=evaluate, name=cfg.task,
                          data_inputs=inputs)


def _evaluation(cfg: FinetuneConfig, tokenizer, device: torch.device):
    from egovlpv2.data import DataConfig
    from egovlpv2.eval.runtime import current_context
    from egovlpv2.eval.report import flatten

    data_cfg = DataConfig(shards=cfg.data.eval_shards, tokenizer=cfg.data.tokenizer, num_frames=cfg.data.num_frames,
                          img_size=cfg.data.img_size, text_max_len=cfg.data.text_max_len,
                          eval_resize=cfg.data.eval_resize, decode_backend=cfg.data.decode_backend,
                          decode_timeout_s=cfg.data.decode_timeout_s)

    def evaluate(run):
        def score(model, _):
            # Under the engine every rank must run the same number of forwards (ZeRO-3 gathers weights in each).
            ctx = dataclasses.replace(current_context(device), equal_batches=True)
            return evaluate_task(cfg.task, model, cfg.data.eval_shards, data_cfg, tokenizer, ctx,
                                 cfg.eval.batch_size, cfg.eval.limit, cfg.data.num_workers, cfg.eval.allow_missing)

        results = run(score, None)
        metrics = {k.replace("/", "_"): float(v) for k, v in flatten(results).items()
                   if k.startswith(("mAP", "nDCG"))}
        metrics["headline"] = headline(cfg.task, results)
        return metrics

    return evaluate


def epoch_steps(cfg: FinetuneConfig, train_set, world_size: int) -> int:
    """Optimizer steps in one epoch at this world size."""
    return max(1, len(train_set) // world_size // cfg.data.batch_size // cfg.train.grad_accum_steps)

