"""One feature-extraction run, as ``egovlpv2-extract-features`` and the SLURM ``features`` entry start it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from egovlpv2.errors import UsageError

# A rank that finished its share waits for the slowest one at the final count, for up to this long.
SHARE_WAIT_S = 24 * 3600


@dataclass(frozen=True)
class ExtractionRequest:
    preset: str  # egonlq, egomq or dense
    checkpoint: Path
    videos: Path  # a directory of videos, or (without annotations) a text file listing them
    out: Path
    annotations: Optional[Path] = None
    tokenizer: Optional[Path] = None
    model: str = "auto"
    windows_per_second: Optional[float] = None  # dense only
    frames_per_window: Optional[int] = None  # dense only
    batch_size: int = 16  # windows per forward pass
    precision: str = "fp32"


def run_extraction(request: ExtractionRequest, should_stop: Optional[Callable[[], bool]] = None):
    """Extract this rank's share; returns the ``ExtractionResult`` (its ``stopped``: ended early by
    ``should_stop``, asked before each clip)."""
    from egovlpv2.dist.env import init_distributed, select_device
    from egovlpv2.eval.checkpoints import load_eval_model
    from egovlpv2.eval.feature_presets import resolve_preset
    from egovlpv2.eval.features import ExtractionResult, clips_left, extract, plan_jobs
    from egovlpv2.eval.runtime import AMP_DTYPES, current_context

    preset = resolve_preset(request.preset, request.windows_per_second, request.frames_per_window)
    if preset.needs_queries and request.tokenizer is None:
        raise UsageError(f"--preset {preset.name} needs --tokenizer (the RoBERTa tokenizer directory)")
    jobs = plan_jobs(preset.name, request.videos, request.annotations)
    env = init_distributed(timeout_s=SHARE_WAIT_S)
    ctx = current_context(select_device(env), AMP_DTYPES[request.precision])
    model, _ = load_eval_model(request.checkpoint, request.model, preset.frames_per_window, ctx.device)
    tokenizer = None
    if preset.needs_queries:
        from egovlpv2.data.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(str(request.tokenizer))
    written = extract(preset, model, jobs, request.out, ctx, tokenizer=tokenizer, batch_size=request.batch_size,
                      should_stop=should_stop)
    result = ExtractionResult(written=written, clips=len(jobs), left=clips_left(preset, jobs, request.out, ctx))
    print(f"rank {ctx.rank}: wrote {len(written)} of {len(jobs)} clips to {request.out}"
          + (f"; stopped with {result.left} clips left, run again to continue" if result.stopped else ""))
    return result
