"""One evaluation run, as ``egovlpv2-evaluate`` does it: load the checkpoint, score the benchmark on every
rank, write the results table and, when asked, the retrieval report."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from egovlpv2.dist.env import init_distributed, select_device
from egovlpv2.errors import MissingPathError, UsageError
from egovlpv2.eval.benchmarks import TASKS, rank_task
from egovlpv2.eval.checkpoints import load_eval_model
from egovlpv2.eval.report import write_report
from egovlpv2.eval.retrieval_report import DEFAULT_QUERIES, write_retrieval_report
from egovlpv2.eval.runtime import AMP_DTYPES, current_context
from egovlpv2.model.config import resolve_model_config
from egovlpv2.storage import exists, join


@dataclass(frozen=True)
class EvalRun:
    task: str                      # one of eval.benchmarks.TASKS
    checkpoint: str                # our exported model file or the released EgoVLPv2*.pth
    data: str                      # eval shard directory or URL, from egovlpv2-make-shards --task ...
    tokenizer: str                 # local Hugging Face tokenizer directory
    model: str = "auto"            # model recipe or YAML; "auto" infers base/smallproj from the checkpoint
    num_frames: int = 16
    batch_size: int = 16           # clips per forward pass
    precision: str = "fp32"        # a key of runtime.AMP_DTYPES
    limit: int | None = None       # first N samples only (a trial; not comparable)
    num_workers: int = 4           # decoding processes per rank
    allow_missing: bool = False    # evaluate although the manifest lists failed samples
    out: str | None = None         # results JSON (default results/<task>.json); the .md table beside it
    report: str | None = None      # folder for retrieval.png and index.html; None: no report
    report_queries: int = DEFAULT_QUERIES
    report_seed: int = 0           # which queries the report draws


def check_run(run: EvalRun) -> None:
    """The run's values and paths, checked before the process group forms: a bad one is one error line
    from each rank, not a traceback from deep inside a collective run."""
    if run.task not in TASKS:
        raise UsageError(f"--task {run.task}: choose from {', '.join(TASKS)}")
    if run.precision not in AMP_DTYPES:
        raise UsageError(f"--precision {run.precision}: choose from {', '.join(sorted(AMP_DTYPES))}")
    if run.report is not None and run.report_queries < 1:
        raise UsageError(f"--report-queries {run.report_queries}: the report shows at least one query")
    if not Path(run.checkpoint).exists():
        raise MissingPathError(f"--checkpoint {run.checkpoint}: no such file")
    if not exists(join(run.data, "manifest.json")):  # a path or a URL (an unreachable store raises here)
        raise MissingPathError(f"--data {run.data}: no shard directory (manifest.json) there; write it with "
                               f"egovlpv2-make-shards --task {run.task}")
    if not Path(run.tokenizer).is_dir():
        raise MissingPathError(f"--tokenizer {run.tokenizer}: no such directory (a local Hugging Face tokenizer)")


def evaluate(run: EvalRun) -> dict:
    """Evaluate `run.task`; every rank returns the task's results, rank 0 writes the files."""
    check_run(run)
    from egovlpv2.data import DataConfig
    from egovlpv2.data.tokenizer import load_tokenizer

    env = init_distributed()
    ctx = current_context(select_device(env), AMP_DTYPES[run.precision])
    model, recipe = load_eval_model(run.checkpoint, run.model, run.num_frames, ctx.device)
    data_cfg = DataConfig(shards=run.data, num_frames=run.num_frames, img_size=resolve_model_config(recipe).video.img_size,
                          tokenizer=run.tokenizer, num_workers=run.num_workers)
    tokenizer = load_tokenizer(run.tokenizer)
    results, ranking = rank_task(run.task, model, run.data, data_cfg, tokenizer, ctx, run.batch_size, run.limit,
                                 run.num_workers, run.allow_missing)
    if ctx.is_main:
        info = {"checkpoint": str(run.checkpoint), "model": recipe, "num_frames": run.num_frames,
                "data": str(run.data), "precision": run.precision, "limit": run.limit}
        out = Path(run.out or f"results/{run.task}.json")
        print(write_report(run.task, results, out, info))
        print(f"wrote {out} and {out.with_suffix('.md')}")
        if run.report is not None:
            write_retrieval_report(run.report, run.task, results, info, ranking, data_cfg, run.report_queries,
                                   run.report_seed)
            print(f"wrote {Path(run.report, 'retrieval.png')} and {Path(run.report, 'index.html')}")
    return results
