"""What ``egovlpv2-submit`` can run: each entry names the library function every task calls with the typed
value the command line resolved (a config, an ``EvalRun``...), its run directory, and what ``--dry-run``
prints of it. The function objects themselves are pickled with the job: submitit pickles them by module and
name, so a job imports them from its code snapshot."""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

from egovlpv2.cluster.check import run_check
from egovlpv2.errors import MissingPathError, UsageError, UserError
from egovlpv2.eval.feature_run import ExtractionRequest, run_extraction
from egovlpv2.eval.run import check_run, evaluate
from egovlpv2.shards.make import ShardRun
from egovlpv2.shards.publish import write_shards_to


@dataclass(frozen=True)
class DeepSpeedRun:
    """A pre-training or fine-tuning job: the resolved recipe (its run directory pinned) and DeepSpeed config."""
    config: Any  # PretrainConfig or FinetuneConfig
    ds_config: dict


@dataclass(frozen=True)
class ShardWriting:
    """A shard-writing job: every task writes part RANK of WORLD_SIZE of ``run``."""
    run: ShardRun
    staging: Optional[str] = None  # for a URL --out, as in write_shards_to


@dataclass(frozen=True)
class Prepared:
    value: Any  # what every task passes to the entry's function
    output_dir: Path  # the run directory
    resolved_config: dict  # what will run, printed by --dry-run as YAML


def fit_stop_timeout(prepared: Prepared, signal_delay_s: float) -> tuple[Prepared, Optional[str]]:
    """A training job gets SLURM's warning ``signal_delay_s`` before its time limit: its ``train.stop_timeout_s``
    (reaching the next step boundary) is at most half of that, the other half is for the save and the requeue.
    Returns the prepared job, with the timeout lowered where needed, and a line saying so."""
    run, limit = prepared.value, signal_delay_s / 2
    if not isinstance(run, DeepSpeedRun) or run.config.train.stop_timeout_s <= limit:
        return prepared, None
    was = run.config.train.stop_timeout_s
    config = replace(run.config, train=replace(run.config.train, stop_timeout_s=limit))
    return _prepare_deepspeed(replace(run, config=config), prepared.output_dir), (
        f"train.stop_timeout_s={limit:g} (was {was:g}): half of --signal-delay-s {signal_delay_s:g} to reach a "
        "step boundary, the other half for the save")


@dataclass(frozen=True)
class Entry:
    run: Callable[[Any], Any]  # called on every task with the prepared value
    prepare: Callable[[Any, "Path | None"], Prepared]  # (typed value, --output-dir) -> Prepared
    help: str
    # Checks before submitting, against the run directory: a reason not to submit (the run is done),
    # or an exception for a submission that cannot work.
    preflight: Optional[Callable[[Prepared, int], Optional[str]]] = None
    # What the submission will do with the run directory, when worth saying (printed before submitting).
    plan: Optional[Callable[[Prepared, int], Optional[str]]] = None


def plain(value: Any) -> Any:
    """A dataclass value as YAML-safe builtins (paths as strings)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def _prepare_plain(value: Any, output_dir: Path | None) -> Prepared:
    """Entries without a run directory of their own: the job's logs and code snapshot go to --output-dir."""
    if output_dir is None:
        raise UsageError("this entry needs --output-dir (where the job's logs and code snapshot go)")
    return Prepared(value=value, output_dir=Path(output_dir).absolute(), resolved_config=plain(asdict(value)))


def _prepare_deepspeed(run: DeepSpeedRun, output_dir: Path | None) -> Prepared:
    """The run directory is the recipe's ``train.output_dir`` (the command line pinned --output-dir there)."""
    return Prepared(value=run, output_dir=Path(run.config.train.output_dir).absolute(),
                    resolved_config={**plain(asdict(run.config)), "deepspeed": run.ds_config})


def _latest_state(prepared: Prepared) -> Optional[tuple[Path, dict]]:
    """(tag directory, trainer_state.json) of the checkpoint the job will resume from, or None."""
    from egovlpv2.train.checkpoint_commit import latest_complete_state

    return latest_complete_state(prepared.output_dir / "checkpoints")


def _zero_stage(prepared: Prepared) -> int:
    return prepared.value.ds_config.get("zero_optimization", {}).get("stage", 0)


def _training_preflight(prepared: Prepared, world_size: int) -> Optional[str]:
    """Pre-training and fine-tuning: a finished run is not submitted again; a checkpoint from before elastic
    resume needs its own world size (with it, any world size resumes: the engine loads the world-size-independent
    state, the loader deals the rest of the epoch over the new ranks)."""
    from egovlpv2.train.elastic_state import has_full_state, needs_elastic_load

    found = _latest_state(prepared)
    if found is None:
        return None
    tag_dir, state = found
    if needs_elastic_load(state, world_size, _zero_stage(prepared)) and not has_full_state(tag_dir):
        raise UsageError(
            f"{tag_dir} was written by {state['world_size']} ranks (ZeRO stage {state.get('zero_stage', '?')}) without "
            f"the world-size-independent full_state/, and this submission has {world_size} ranks (stage "
            f"{_zero_stage(prepared)}): resume it with the same GPUs and ZeRO stage"
        )
    if state.get("total_steps") is not None and state["step"] >= state["total_steps"]:
        return f"{prepared.output_dir} already finished (step {state['step']} of {state['total_steps']}); nothing to submit"
    return None


def _training_plan(prepared: Prepared, world_size: int) -> Optional[str]:
    """Say when the job will resume elastically (another world size or ZeRO stage than the checkpoint's)."""
    from egovlpv2.train.elastic_state import describe, needs_elastic_load

    found = _latest_state(prepared)
    if found is None or not needs_elastic_load(found[1], world_size, _zero_stage(prepared)):
        return None
    return f"elastic resume of {found[0]}: {describe(found[1], world_size, _zero_stage(prepared))}"


def pretrain(run: DeepSpeedRun):
    """Every task of a pre-training job: the loop's ``RunResult`` (its ``stopped`` tells the launcher to requeue)."""
    from egovlpv2.dist.signals import install_stop_handlers
    from egovlpv2.train.pretrain import run_pretraining

    install_stop_handlers()  # SIGUSR1 / SIGTERM save at the next step, as under egovlpv2-pretrain
    return run_pretraining(run.config, run.ds_config)


def finetune(run: DeepSpeedRun):
    """Every task of a fine-tuning job, as for pre-training."""
    from egovlpv2.dist.signals import install_stop_handlers
    from egovlpv2.finetune.run import run_finetuning

    install_stop_handlers()
    return run_finetuning(run.config, run.ds_config)


def _features_plan(request: ExtractionRequest):
    """The request's clips, and how many of them have their features already."""
    from egovlpv2.eval.feature_presets import resolve_preset
    from egovlpv2.eval.features import is_done, plan_jobs

    preset = resolve_preset(request.preset, request.windows_per_second, request.frames_per_window)
    if not Path(request.checkpoint).is_file():
        raise MissingPathError(f"--checkpoint {request.checkpoint} not found")
    if preset.needs_queries and not (request.tokenizer and Path(request.tokenizer).is_dir()):
        raise MissingPathError(f"{preset.name} needs --tokenizer, a tokenizer directory (got {request.tokenizer})")
    jobs = plan_jobs(preset.name, request.videos, request.annotations)
    done = sum(is_done(request.out, job, preset) for job in jobs)
    return jobs, done


def _prepare_features(request: ExtractionRequest, output_dir: Path | None) -> Prepared:
    """The clips are planned now (a missing video or annotation fails before queueing); the job's logs go to
    --output-dir, by default the features directory (--out)."""
    jobs, done = _features_plan(request)
    summary = {**plain(asdict(request)), "clips": len(jobs), "clips_done": done}
    return Prepared(value=request, output_dir=Path(output_dir or request.out).absolute(), resolved_config=summary)


def _features_preflight(prepared: Prepared, world_size: int) -> Optional[str]:
    """Every clip done: nothing to submit."""
    jobs, done = _features_plan(prepared.value)
    return f"all {len(jobs)} clips already have features; nothing to submit" if done == len(jobs) else None


def features(request: ExtractionRequest):
    """Every task of a feature-extraction job: clip i on rank i % world size, the finished ones skipped.

    A stop request (the time limit's USR2, routed by the job) ends the task after its clip in progress;
    the result's ``stopped`` (clips left on any rank) tells the launcher to requeue.
    """
    from egovlpv2.cluster.job import log_to_stderr
    from egovlpv2.dist.signals import install_stop_handlers, stop_requested

    log_to_stderr(logging.getLogger("egovlpv2.eval.features"))  # one line per clip written, in the task's log
    install_stop_handlers()
    return run_extraction(request, should_stop=stop_requested)


def _eval_preflight(prepared: Prepared, world_size: int) -> None:
    """The checkpoint, shards and tokenizer are there before anything is queued."""
    check_run(prepared.value)


def shards(writing: ShardWriting):
    """Every task of a shard-writing job: part RANK of WORLD_SIZE; the last part to finish writes the manifest
    and prints the summary. A requeued task keeps its finished shards. Returns write_shards_to's
    (manifest, summary, ok, uploaded); more failed rows than the run allows fail the task."""
    from egovlpv2.shards.merge import format_summary

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    try:
        written = write_shards_to(replace(writing.run, part=rank, parts=world), writing.staging)
    except UserError as exc:
        raise SystemExit(f"error: make_shards part {rank} of {world}: {exc}") from None
    manifest, summary, ok, _ = written
    print("\n".join(format_summary(summary)) if summary else f"part {rank} of {world} done", flush=True)
    if not ok:
        raise SystemExit(f"error: {summary['rows_failed']} of {summary['rows_planned']} rows failed, more than "
                         f"{writing.run.max_failure_fraction:.1%} (see {writing.run.out}/failures.jsonl)")
    return written


ENTRIES: dict[str, Entry] = {
    "pretrain": Entry(pretrain, _prepare_deepspeed,
                      "pre-training with egovlpv2-pretrain's arguments (requeued until done)", _training_preflight,
                      _training_plan),
    "eval": Entry(evaluate, _prepare_plain, "egovlpv2-evaluate on every task", _eval_preflight),
    "shards": Entry(shards, _prepare_plain, "egovlpv2-make-shards on CPU nodes, one part of the shards per task"),
    "check": Entry(run_check, _prepare_plain, "all-reduce across every task, then exit"),
    "finetune": Entry(finetune, _prepare_deepspeed,
                      "fine-tuning with egovlpv2-finetune's arguments (requeued until done)", _training_preflight,
                      _training_plan),
    "features": Entry(features, _prepare_features,
                      "egovlpv2-extract-features' arguments, clips split over the tasks (requeued until done)",
                      _features_preflight),
}
