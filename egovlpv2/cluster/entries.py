"""What ``egovlpv2-submit`` can run: each entry names the function every task calls and how its
arguments give the run directory and the resolved config (printed by ``--dry-run``)."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from egovlpv2.errors import MissingPathError, UsageError


@dataclass(frozen=True)
class Prepared:
    argv: list[str]  # the arguments every task passes to the entry point
    output_dir: Path  # the run directory
    resolved_config: str  # YAML of what will run ("" when the entry has no config)


@dataclass(frozen=True)
class Entry:
    target: str  # "package.module:function", called as function(argv)
    prepare: Callable[[list[str], "Path | None"], Prepared]
    help: str
    # Checks before submitting, against the run directory: a reason not to submit (the run is done),
    # or an exception for a submission that cannot work.
    preflight: Optional[Callable[[Prepared, int], Optional[str]]] = None


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


def _prepare_pretrain(argv: list[str], output_dir: Path | None) -> Prepared:
    """Resolve the recipe now (errors surface before queueing) and pin the run directory to an absolute path."""
    from egovlpv2.config import to_dict
    from egovlpv2.recipes import resolve_recipe
    from egovlpv2.train.config import load_pretrain_config

    import yaml

    args = _pretrain_parser().parse_args(argv)
    overrides = list(args.overrides)
    if output_dir is not None:
        overrides.append(f"train.output_dir={Path(output_dir).absolute()}")
    cfg = load_pretrain_config(args.config, overrides)
    run_dir = Path(cfg.train.output_dir).absolute()
    if output_dir is None:
        overrides.append(f"train.output_dir={run_dir}")
        cfg = load_pretrain_config(args.config, overrides)
    if not resolve_recipe("deepspeed", args.ds_config).is_file():
        raise MissingPathError(f"DeepSpeed config {args.ds_config} not found")
    recipe, ds_config = (str(Path(name).absolute()) if Path(name).suffix else name  # a path or a shipped name
                         for name in (args.config, args.ds_config))
    job_argv = ["--deepspeed", ds_config, "--config", recipe, *overrides]
    return Prepared(argv=job_argv, output_dir=run_dir, resolved_config=yaml.safe_dump(to_dict(cfg), sort_keys=False))


def _pretrain_preflight(prepared: Prepared, world_size: int) -> Optional[str]:
    """A finished run is not submitted again; a checkpoint of another world size cannot resume exactly."""
    ckpt = prepared.output_dir / "checkpoints"
    latest = ckpt / "latest"
    if not latest.is_file():
        return None
    state_file = ckpt / latest.read_text().strip() / "trainer_state.json"
    if not state_file.is_file():
        return None  # an incomplete layout: the job reports it with the full context
    state = json.loads(state_file.read_text())
    if state.get("world_size") not in (None, world_size):
        raise UsageError(
            f"{state_file.parent} was written by {state['world_size']} ranks but this submission has {world_size}: "
            "resume needs the same number of GPUs (change --nodes/--gpus-per-node, or export the weights and start a new run)"
        )
    if state.get("total_steps") is not None and state["step"] >= state["total_steps"]:
        return f"{prepared.output_dir} already finished (step {state['step']} of {state['total_steps']}); nothing to submit"
    return None


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


ENTRIES: dict[str, Entry] = {
    "pretrain": Entry("egovlpv2.cluster.entries:pretrain", _prepare_pretrain,
                      "pre-training with egovlpv2-pretrain's arguments (requeued until done)", _pretrain_preflight),
    "eval": Entry("egovlpv2.cli.evaluate:evaluate", _prepare_plain, "egovlpv2-evaluate on every task"),
    "check": Entry("egovlpv2.cluster.check:main", _prepare_plain, "all-reduce across every task, then exit"),
}
