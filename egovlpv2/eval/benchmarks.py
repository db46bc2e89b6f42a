"""One entry point for the three benchmarks, used by `egovlpv2-evaluate` and the fine-tuning eval hook."""
from __future__ import annotations

from pathlib import Path

from egovlpv2.errors import MissingPathError
from egovlpv2.eval.charades_ego import rank_charades_ego
from egovlpv2.eval.egomcq import rank_egomcq
from egovlpv2.eval.epic_mir import rank_epic_mir
from egovlpv2.eval.ranking import Ranking
from egovlpv2.eval.runtime import EvalContext
from egovlpv2.storage import exists, join

TASKS = ("egomcq", "epic_mir", "charades_ego")
# The single figure that summarises each task (model selection, logging).
HEADLINE = {"egomcq": ("ensemble", "intra"), "epic_mir": ("mAP", "avg"), "charades_ego": ("mAP",)}


def rank_task(task: str, model, shard_dir: str | Path, data_cfg, tokenizer, ctx: EvalContext,
              batch_size: int = 8, limit: int | None = None, num_workers: int = 2,
              allow_missing: bool = False) -> tuple[dict, Ranking]:
    """(results, what was ranked); `batch_size` counts clips per forward pass (an EgoMCQ question holds 5)."""
    if not exists(join(str(shard_dir), "manifest.json")):
        raise MissingPathError(f"{task}: shard directory not found (no manifest.json): {shard_dir}")
    common = dict(ctx=ctx, limit=limit, num_workers=num_workers, allow_missing=allow_missing)
    if task == "egomcq":
        return rank_egomcq(model, shard_dir, data_cfg, tokenizer, batch_size=max(1, batch_size // 5), **common)
    if task == "epic_mir":
        return rank_epic_mir(model, shard_dir, data_cfg, tokenizer, batch_size=batch_size, **common)
    if task == "charades_ego":
        return rank_charades_ego(model, shard_dir, data_cfg, tokenizer, batch_size=batch_size, **common)
    raise ValueError(f"unknown task {task!r}; choose from {TASKS}")


def evaluate_task(task: str, model, shard_dir: str | Path, data_cfg, tokenizer, ctx: EvalContext,
                  batch_size: int = 8, limit: int | None = None, num_workers: int = 2,
                  allow_missing: bool = False) -> dict:
    """The results of `rank_task` (the fine-tuning evaluation)."""
    return rank_task(task, model, shard_dir, data_cfg, tokenizer, ctx, batch_size, limit, num_workers, allow_missing)[0]


def headline(task: str, results: dict) -> float:
    value = results
    for key in HEADLINE[task]:
        value = value[key]
    return float(value)
