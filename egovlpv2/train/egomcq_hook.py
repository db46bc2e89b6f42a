"""EgoMCQ during pre-training: dual, VTM and ensemble accuracy, inter- and intra-video.

Scoring is the evaluator's (``egovlpv2.eval.egomcq``). What differs from ``launch/evaluate.py``: the
model is inside a DeepSpeed engine, where ZeRO-3 makes every forward a collective, so each rank runs the
same number of batches: a rank's round-robin share is padded with repeats of its own questions, and the
repeats are dropped before the scores are gathered (each question still counts once).
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from egovlpv2.dist.signals import ignore_stop_signals
from egovlpv2.eval.egomcq import accuracies, score_questions
from egovlpv2.eval.eval_samples import EvalSamples
from egovlpv2.eval.runtime import EvalContext, gather_rows, progress
from egovlpv2.train.engine import precision_dtype


def padded_share(count: int, rank: int, world_size: int) -> tuple[list[int], int]:
    """This rank's indices (rank, rank + W, ...) padded to ceil(count / W) by repeating its first; and how many are real."""
    mine = list(range(rank, count, world_size))
    target = math.ceil(count / world_size)
    if not mine:
        mine = [0]  # a rank beyond the last question re-scores question 0 and discards it
        return mine * target, 0
    return mine + [mine[0]] * (target - len(mine)), len(mine)


def flatten(result: dict) -> dict[str, float]:
    """{"dual": {"inter": a, ...}} -> {"dual_inter": a, ...}."""
    return {f"{kind}_{split}": value for kind, splits in result.items() for split, value in splits.items()}


class EgoMCQHook:
    """``hook(run) -> {"ensemble_inter": %, "ensemble_intra": %, "dual_inter": ...}`` on every rank."""

    def __init__(self, cfg, tokenizer, device: torch.device, ds_config: dict):
        frames = cfg.eval.num_frames or cfg.model.video.num_frames
        data_cfg = dataclasses.replace(cfg.data, num_frames=frames)
        self.dataset = EvalSamples("egomcq", cfg.eval.egomcq_shards, data_cfg, tokenizer, cfg.eval.max_questions)
        if len(self.dataset) == 0:
            raise ValueError(f"eval.egomcq_shards={cfg.eval.egomcq_shards} holds no questions")
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        dtype = precision_dtype(ds_config)
        self.ctx = EvalContext(device, rank, world, None if dtype == torch.float32 else dtype)
        self.batch_size = cfg.eval.batch_size
        self.num_workers = min(2, cfg.data.num_workers)

    def __call__(self, run) -> dict[str, float]:
        share, real = padded_share(len(self.dataset), self.ctx.rank, self.ctx.world_size)
        loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=share, num_workers=self.num_workers,
                            collate_fn=list, worker_init_fn=ignore_stop_signals)
        indices, rows, seen = [], [], 0
        for chunk in progress(loader, self.ctx, "EgoMCQ", math.ceil(len(share) / self.batch_size)):
            questions = [sample for _, sample in chunk]
            dual, vtm = run(lambda model, qs: score_questions(model, qs, self.ctx), questions)
            for (index, sample), d, v in zip(chunk, dual.cpu(), vtm.cpu()):
                if seen < real:
                    indices.append(index)
                    rows.append(torch.cat([d, v, torch.tensor([sample["answer"], sample["type"]], dtype=d.dtype)]))
                seen += 1
        table = gather_rows(indices, rows, self.ctx, "EgoMCQ questions")
        choices = (table.shape[1] - 2) // 2
        result = accuracies(table[:, :choices], table[:, choices:2 * choices], table[:, -2].long(), table[:, -1].long())
        return flatten(result)
