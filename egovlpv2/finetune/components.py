"""Fine-tuning as `LoopComponents` of the shared training loop: datasets from shards, a resumable loader, the
objective, and the benchmark evaluation as the loop's eval hook."""
from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Optional

import torch
from torch.utils.data import DataLoader

from egovlpv2.data.eval_data import epic_mir_relevancy_path, load_charades_classes, load_epic_mir_captions
from egovlpv2.data.manifest import ShardManifest
from egovlpv2.data.random_access import ClipDecoder, index_shards, read_sample
from egovlpv2.data.transforms import prepare_video
from egovlpv2.dist.signals import ignore_stop_signals
from egovlpv2.eval.benchmarks import evaluate_task, headline
from egovlpv2.eval.epic_mir import load_relevancy
from egovlpv2.finetune.config import FinetuneConfig
from egovlpv2.finetune.datasets import CharadesEgoTrainSet, EpicMirTrainSet, TextCollator
from egovlpv2.finetune.objectives import CharadesEgoObjective, EpicMirObjective
from egovlpv2.train.loop import LoopComponents


def _metas(refs) -> list[dict]:
    return [read_sample(ref, members=("json",))[0] for ref in refs]


def build_train_set(cfg: FinetuneConfig):
    """The task's training dataset over `cfg.data.train_shards`."""
    shards = ShardManifest.read(cfg.data.train_shards)  # read once, for the samples and what lies beside them
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


class FinetuneLoader:
    """Epoch-seeded shuffled batches of one rank, the same count on every rank, resumable at any batch.

    Each epoch permutes all samples with (seed, epoch), deals them round-robin to ranks, and drops the
    remainder so that every rank yields `batches_per_epoch` batches (a short rank would hang the others).
    """

    def __init__(self, dataset, collate, batch_size: int, rank: int, world_size: int, num_workers: int,
                 seed: int, state: Optional[dict] = None):
        self.dataset, self.collate, self.batch_size = dataset, collate, batch_size
        self.rank, self.world_size, self.num_workers, self.seed = rank, world_size, num_workers, seed
        self.epoch, self.batch = (state["epoch"], state["batch"]) if state else (0, 0)
        self.skips: Counter = Counter()
        if self.batches_per_epoch() < 1:
            raise ValueError(f"{len(dataset)} training samples are fewer than one batch of {batch_size} on each "
                             f"of {world_size} ranks")

    def batches_per_epoch(self) -> int:
        return len(self.dataset) // self.world_size // self.batch_size

    def _indices(self) -> list[int]:
        order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        mine = order[self.rank::self.world_size].tolist()
        return mine[:self.batches_per_epoch() * self.batch_size]

    def __iter__(self):
        self.dataset.set_epoch(self.epoch)
        indices = self._indices()[self.batch * self.batch_size:]
        batches = [indices[i:i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        loader = DataLoader(self.dataset, batch_sampler=batches, collate_fn=self.collate,
                            num_workers=self.num_workers, worker_init_fn=ignore_stop_signals)
        for batch in loader:
            self.skips.update(batch.pop("skipped"))
            self.batch += 1
            yield batch
        self.epoch, self.batch = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}

    def skip_counts(self) -> dict[str, int]:
        return dict(self.skips)


def build_loop_components(cfg: FinetuneConfig, model, tokenizer, rank: int, world_size: int,
                          device: torch.device, train_set=None) -> LoopComponents:
    """The loop's components: objective, loader factory, batch preparation and (with eval shards) evaluation."""
    train_set = train_set if train_set is not None else build_train_set(cfg)
    collate = TextCollator(tokenizer, cfg.data.text_max_len)
    if cfg.task == "epic_mir":
        objective = EpicMirObjective(model, cfg.loss.margin)
    else:
        objective = CharadesEgoObjective(model, cfg.loss.temperature)

    def make_loader(state):
        return FinetuneLoader(train_set, collate, cfg.data.batch_size, rank, world_size,
                              cfg.data.num_workers, cfg.data.seed, state)

    def prepare(batch, dev):
        out = {k: (v.to(dev, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
        out["video"] = prepare_video(out["video"], model)
        return out

    evaluate = None
    if cfg.data.eval_shards:
        evaluate = _evaluation(cfg, tokenizer, device)
    return LoopComponents(objective=objective, make_loader=make_loader, prepare=prepare,
                          count_clips=lambda batch: int(batch["video"].shape[0]), evaluate=evaluate, name=cfg.task)


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

