"""What ``egovlpv2-submit`` can run: each entry names the function every task calls and how its
arguments give the run directory and the resolved config (printed by ``--dry-run``)."""
from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

from egovlpv2.errors import MissingPathError, UsageError


@dataclass(frozen=True)
class Prepared:
    argv: list[str]  # the arguments every task passes to the entry point
    output_dir: Path  # the run directory
    resolved_config: str  # YAML of what will run ("" when the entry has no config)
    stop_timeout_s: Optional[float] = None  # the training loop's train.stop_timeout_s (None: no training loop)


def fit_stop_timeout(prepared: Prepared, signal_delay_s: float) -> tuple[Prepared, Optional[str]]:
    """A training job gets SLURM's warning ``signal_delay_s`` before its time limit: its ``train.stop_timeout_s``
    (reaching the next step boundary) is at most half of that, the other half is for the save and the requeue.
    Returns the prepared job, with the timeout lowered where needed, and a line saying so."""
    import yaml

    limit = signal_delay_s / 2
    if prepared.stop_timeout_s is None or prepared.stop_timeout_s <= limit:
        return prepared, None
    resolved = yaml.safe_load(prepared.resolved_config)
    resolved["train"]["stop_timeout_s"] = limit
    fitted = replace(prepared, argv=[*prepared.argv, f"train.stop_timeout_s={limit:g}"], stop_timeout_s=limit,
                     resolved_config=yaml.safe_dump(resolved, sort_keys=False))
    return fitted, (f"train.stop_timeout_s={limit:g} (was {prepared.stop_timeout_s:g}): half of --signal-delay-s "
                    f"{signal_delay_s:g} to reach a step boundary, the other half for the save")


@dataclass(frozen=True)
class Entry:
    target: str  # "package.module:function", called as function(argv)
    prepare: Callable[[list[str], "Path | None"], Prepared]
    help: str
    # Checks before submitting, against the run directory: a reason not to submit (the run is done),
    # or an exception for a submission that cannot work.
    preflight: Optional[Callable[[Prepared, int], Optional[str]]] = None
    # What the submission will do with the run directory, when worth saying (printed before submitting).
    plan: Optional[Callable[[Prepared, int], Optional[str]]] = None


def _prepare_plain(argv: list[str], output_dir: Path | None) -> Prepared:
    """Entries without a recipe: the arguments go through unchanged; the run directory holds the logs."""
    if output_dir is None:
        raise UsageError("this entry needs --output-dir (where the job's logs and code snapshot go)")
    return Prepared(argv=list(argv), output_dir=Path(output_dir).absolute(), resolved_config="")


def _pretrain_parser() -> argparse.ArgumentParser:
    """The arguments of egovlpv2-pretrain."""
    p = argparse.ArgumentParser(prog="egovlpv2-submit [submit options]", add_help=False)
    p.add_argument("--deepspeed", "--deepspeed_config", dest="ds_config", default="zero2")
    p.add_argument("--config", default="demo")
    p.add_argument("overrides", nargs="*")
    return p


def _prepare_recipe(args: argparse.Namespace, output_dir: Path | None, load: Callable[[list[str]], Any],
                    ds_config: str, leading: list[str]) -> Prepared:
    """The DeepSpeed training entries: resolve the recipe now (errors surface before queueing) and pin the run
    directory to an absolute path. ``load(overrides)`` gives the config; ``leading`` goes before the recipe."""
    import yaml

    from egovlpv2.config import to_dict
    from egovlpv2.recipes import resolve_recipe

    overrides = list(args.overrides)
    if output_dir is not None:
        overrides.append(f"train.output_dir={Path(output_dir).absolute()}")
    cfg = load(overrides)
    run_dir = Path(cfg.train.output_dir).absolute()
    if output_dir is None:
        overrides.append(f"train.output_dir={run_dir}")
        cfg = load(overrides)
    if not resolve_recipe("deepspeed", ds_config).is_file():
        raise MissingPathError(f"DeepSpeed config {ds_config} not found")

    def pinned(name: str) -> str:  # a path (made absolute) or a shipped name
        return str(Path(name).absolute()) if Path(name).suffix else name

    recipe = ["--config", pinned(args.config)] if args.config else []
    job_argv = [*leading, "--deepspeed", pinned(ds_config), *recipe, *overrides]
    return Prepared(argv=job_argv, output_dir=run_dir, resolved_config=yaml.safe_dump(to_dict(cfg), sort_keys=False),
                    stop_timeout_s=cfg.train.stop_timeout_s)


def _prepare_pretrain(argv: list[str], output_dir: Path | None) -> Prepared:
    from egovlpv2.train.config import load_pretrain_config

    args = _pretrain_parser().parse_args(argv)
    return _prepare_recipe(args, output_dir, lambda overrides: load_pretrain_config(args.config, overrides),
                           args.ds_config, [])


def _latest_state(prepared: Prepared) -> Optional[tuple[Path, dict]]:
    """(tag directory, trainer_state.json) of the checkpoint the job will resume from, or None."""
    from egovlpv2.train.checkpoint_commit import latest_complete_state

    return latest_complete_state(prepared.output_dir / "checkpoints")


def _zero_stage(prepared: Prepared) -> Optional[int]:
    from egovlpv2.recipes import resolve_recipe

    ds_config = json.loads(resolve_recipe("deepspeed", _pretrain_parser().parse_known_args(prepared.argv)[0].ds_config).read_text())
    return ds_config.get("zero_optimization", {}).get("stage", 0)


def _pretrain_preflight(prepared: Prepared, world_size: int) -> Optional[str]:
    """A finished run is not submitted again; a checkpoint from before elastic resume needs its own world size."""
    from egovlpv2.train.elastic import has_full_state, needs_elastic_load

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


def _finetune_preflight(prepared: Prepared, world_size: int) -> Optional[str]:
    """As for pre-training, except that fine-tuning's loader position is per rank: it resumes only at the
    world size that wrote the checkpoint."""
    found = _latest_state(prepared)
    if found is not None and found[1].get("world_size") not in (None, world_size):
        raise UsageError(f"{found[0]} was written by {found[1]['world_size']} ranks but this submission has "
                         f"{world_size}: fine-tuning resumes with the same number of GPUs")
    return _pretrain_preflight(prepared, world_size)


def _pretrain_plan(prepared: Prepared, world_size: int) -> Optional[str]:
    """Say when the job will resume elastically (another world size or ZeRO stage than the checkpoint's)."""
    from egovlpv2.train.elastic import describe, needs_elastic_load

    found = _latest_state(prepared)
    if found is None or not needs_elastic_load(found[1], world_size, _zero_stage(prepared)):
        return None
    return f"elastic resume of {found[0]}: {describe(found[1], world_size, _zero_stage(prepared))}"


def pretrain(argv: list[str]):
    """Every task of a pre-training job: egovlpv2-pretrain's arguments in, the loop's ``RunResult`` out
    (its ``stopped`` tells the launcher to requeue)."""
    from egovlpv2.train.checkpoint import install_stop_handlers
    from egovlpv2.train.config import load_pretrain_config
    from egovlpv2.train.pretrain import run_pretraining

    args = _pretrain_parser().parse_args(argv)
    cfg = load_pretrain_config(args.config, args.overrides)
    install_stop_handlers()  # SIGUSR1 / SIGTERM save at the next step, as under egovlpv2-pretrain
    return run_pretraining(cfg, args.ds_config)


def _prepare_finetune(argv: list[str], output_dir: Path | None) -> Prepared:
    """egovlpv2-finetune's arguments; the recipe resolved as for pre-training."""
    from egovlpv2.cluster.job import resolve_entry
    from egovlpv2.config import ConfigError
    from egovlpv2.finetune.config import load_finetune_config

    args = resolve_entry("egovlpv2.cli.finetune:parse_args")(argv)

    def load(overrides: list[str]):
        cfg = load_finetune_config(args.config or args.task, overrides)
        if cfg.task != args.task:
            raise ConfigError(f"--task {args.task} but the recipe is for {cfg.task}")
        return cfg

    return _prepare_recipe(args, output_dir, load, args.deepspeed, ["--task", args.task])


def _features_plan(argv: list[str]):
    """egovlpv2-extract-features' arguments, its clips, and how many of them have their features already."""
    from egovlpv2.cluster.job import resolve_entry
    from egovlpv2.eval.feature_presets import resolve_preset
    from egovlpv2.eval.features import is_done, plan_jobs

    args = resolve_entry("egovlpv2.cli.extract_features:parse_args")(argv)
    preset = resolve_preset(args.preset, args.windows_per_second, args.frames)
    if not Path(args.checkpoint).is_file():
        raise MissingPathError(f"--checkpoint {args.checkpoint} not found")
    if preset.needs_queries and not (args.tokenizer and Path(args.tokenizer).is_dir()):
        raise MissingPathError(f"{preset.name} needs --tokenizer, a tokenizer directory (got {args.tokenizer!r})")
    jobs = plan_jobs(preset.name, args.videos, args.annotations)
    done = sum(is_done(args.out, job, preset) for job in jobs)
    return args, jobs, done


def _prepare_features(argv: list[str], output_dir: Path | None) -> Prepared:
    """The clips are planned now (a missing video or annotation fails before queueing); the job's logs go to
    --output-dir, by default the features directory (--out)."""
    import yaml

    args, jobs, done = _features_plan(argv)
    summary = {**vars(args), "clips": len(jobs), "clips_done": done}
    return Prepared(argv=list(argv), output_dir=Path(output_dir or args.out).absolute(),
                    resolved_config=yaml.safe_dump(summary, sort_keys=False))


def _features_preflight(prepared: Prepared, world_size: int) -> Optional[str]:
    """Every clip done: nothing to submit."""
    _, jobs, done = _features_plan(prepared.argv)
    return f"all {len(jobs)} clips already have features; nothing to submit" if done == len(jobs) else None


def features(argv: list[str]):
    """Every task of a feature-extraction job: clip i on rank i % world size, the finished ones skipped.

    A stop request (the time limit's USR2, routed by the job) ends the task after its clip in progress;
    the result's ``stopped`` (clips left on any rank) tells the launcher to requeue.
    """
    from egovlpv2.cluster.job import log_to_stderr, resolve_entry
    from egovlpv2.train.checkpoint import install_stop_handlers, stop_requested

    log_to_stderr(logging.getLogger("egovlpv2.eval.features"))  # one line per clip written, in the task's log
    install_stop_handlers()
    return resolve_entry("egovlpv2.cli.extract_features:extract_features")(argv, should_stop=stop_requested)


def shards(argv: list[str]) -> int:
    """Every task of a shard-writing job: egovlpv2-make-shards' arguments, writing part RANK of
    WORLD_SIZE; the last part to finish writes the manifest. A requeued task keeps its finished shards."""
    from egovlpv2.cluster.job import resolve_entry
    from egovlpv2.errors import UserError

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    try:
        return resolve_entry("egovlpv2.cli.make_shards:main")([*argv, "--part", str(rank), "--parts", str(world)])
    except UserError as exc:
        raise SystemExit(f"error: make_shards part {rank} of {world}: {exc}") from None


ENTRIES: dict[str, Entry] = {
    "pretrain": Entry("egovlpv2.cluster.entries:pretrain", _prepare_pretrain,
                      "pre-training with egovlpv2-pretrain's arguments (requeued until done)", _pretrain_preflight,
                      _pretrain_plan),
    "eval": Entry("egovlpv2.cli.evaluate:evaluate", _prepare_plain, "egovlpv2-evaluate on every task"),
    "shards": Entry("egovlpv2.cluster.entries:shards", _prepare_plain,
                    "egovlpv2-make-shards on CPU nodes, one part of the shards per task"),
    "check": Entry("egovlpv2.cluster.check:main", _prepare_plain, "all-reduce across every task, then exit"),
    "finetune": Entry("egovlpv2.cli.finetune:finetune", _prepare_finetune,
                      "fine-tuning with egovlpv2-finetune's arguments (requeued until done)", _finetune_preflight),
    "features": Entry("egovlpv2.cluster.entries:features", _prepare_features,
                      "egovlpv2-extract-features' arguments, clips split over the tasks (requeued until done)",
                      _features_preflight),
}
