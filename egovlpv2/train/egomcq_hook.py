"""EgoMCQ during pre-training: dual, VTM and ensemble accuracy, inter- and intra-video.

The hook runs the evaluator itself (``egovlpv2.eval.egomcq.rank_egomcq``) on the model inside the
DeepSpeed engine, so its figures are those of ``egovlpv2-evaluate`` on the exported weights at the same
frame count and precision. The one difference is the split of the questions: under the engine, ZeRO-3
makes every forward a collective, so every rank runs the same number of batches
(``EvalContext.equal_batches``: shares padded with repeats that are dropped before gathering).
"""
from __future__ import annotations

import dataclasses

import torch

from egovlpv2.data.random_access import index_shards
from egovlpv2.errors import UserError
from egovlpv2.eval.egomcq import SCORE_KINDS, rank_egomcq
from egovlpv2.eval.runtime import current_context
from egovlpv2.train.engine import precision_dtype


def flatten(result: dict) -> dict[str, float]:
    """{"dual": {"inter": a, ...}, ...} -> {"dual_inter": a, ...} for the three scores."""
    return {f"{kind}_{split}": value for kind in SCORE_KINDS for split, value in result[kind].items()}


class EgoMCQHook:
    """``hook(run) -> {"ensemble_inter": %, "ensemble_intra": %, "dual_inter": ...}`` on every rank."""

    def __init__(self, cfg, tokenizer, device: torch.device, ds_config: dict):
        self.shards, self.tokenizer = cfg.eval.egomcq_shards, tokenizer
        self.data_cfg = dataclasses.replace(cfg.data, num_frames=cfg.eval.num_frames or cfg.model.video.num_frames)
        if not index_shards(self.shards, "egomcq"):
            raise UserError(f"eval.egomcq_shards={self.shards} holds no questions")
        dtype = precision_dtype(ds_config)
        self.ctx = dataclasses.replace(current_context(device, None if dtype == torch.float32 else dtype),
                                       equal_batches=True)
        self.batch_size, self.limit = cfg.eval.batch_size, cfg.eval.max_questions
        self.num_workers = min(2, cfg.data.num_workers)

    def __call__(self, run) -> dict[str, float]:
        def score(model, _):
            # Questions that failed at shard time are left out here (and counted); egovlpv2-evaluate
            # refuses such shards unless told --allow-missing.
            results, _ = rank_egomcq(model, self.shards, self.data_cfg, self.tokenizer, self.ctx, self.batch_size,
                                     self.limit, self.num_workers, allow_missing=True)
            return results

        return flatten(run(score, None))
