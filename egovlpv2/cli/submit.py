"""Submit pre-training, fine-tuning, feature extraction, shard writing, evaluation or a cluster check to SLURM
(or run it locally) through submitit.

  egovlpv2-submit --nodes 8 --partition gpu --time 24:00:00 --config egoclip train.max_steps=75000
  egovlpv2-submit --nodes 8 --dry-run --config egoclip          # print sbatch script + config
  egovlpv2-submit --entry check --nodes 2 --output-dir runs/check
  egovlpv2-submit --entry finetune --task epic_mir --time 12:00:00 init_checkpoint=... train.output_dir=...
  egovlpv2-submit --entry features --nodes 2 --preset egomq --checkpoint EgoVLPv2.pth --videos clips/ --annotations moments_val.json --out feats/mq
  egovlpv2-submit --entry shards --nodes 8 --gpus-per-node 0 --output-dir runs/shards \
      --csv egoclip.csv --videos /data/ego4d/v2/video_540ss --out /data/egoclip_shards

The entry's own arguments are those of its command (egovlpv2-pretrain, -finetune, -evaluate, -extract-features,
-make-shards), parsed here by that command's parser into the typed value its library function takes; the
recipe is resolved before anything is queued. ``--entry NAME --help`` lists both.
(``python -m egovlpv2.cli.submit`` and ``python launch/submit.py`` are the same command.)
A requeued job (time limit, preemption) resumes from its run directory's ``latest`` checkpoint; a
feature-extraction job skips the clips that have their features.
"""
import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from egovlpv2.cli import evaluate, extract_features, finetune, make_shards, pretrain, run_cli
from egovlpv2.cluster.check import CheckOptions
from egovlpv2.cluster.entries import ENTRIES, DeepSpeedRun, ShardWriting, fit_stop_timeout
from egovlpv2.cluster.submission import ClusterSpec, sbatch_script, submit
from egovlpv2.errors import UsageError


def _check_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=add_help)
    p.add_argument("--timeout-s", type=float, default=CheckOptions.timeout_s,
                   help="give up joining the process group after this long")
    return p


def _pinned(load: Callable[[list[str]], Any], overrides: list[str], output_dir: Path | None):
    """The recipe ``load(overrides)``, its ``train.output_dir`` made absolute (--output-dir when given)."""
    overrides = list(overrides)
    if output_dir is not None:
        overrides.append(f"train.output_dir={Path(output_dir).absolute()}")
    cfg = load(overrides)
    if not Path(cfg.train.output_dir).is_absolute():
        cfg = load([*overrides, f"train.output_dir={Path(cfg.train.output_dir).absolute()}"])
    return cfg


def _pretrain_run(args: argparse.Namespace) -> DeepSpeedRun:
    from egovlpv2.train.config import load_pretrain_config
    from egovlpv2.train.engine import load_ds_config

    cfg = _pinned(lambda overrides: load_pretrain_config(args.config, overrides), args.overrides, args.output_dir)
    return DeepSpeedRun(config=cfg, ds_config=load_ds_config(args.ds_config))


def _finetune_run(args: argparse.Namespace) -> DeepSpeedRun:
    from egovlpv2.finetune.run import load_task_config
    from egovlpv2.train.engine import load_ds_config

    cfg = _pinned(lambda overrides: load_task_config(args.task, args.config, overrides), args.overrides,
                  args.output_dir)
    return DeepSpeedRun(config=cfg, ds_config=load_ds_config(args.deepspeed))


def _shard_writing(args: argparse.Namespace) -> ShardWriting:
    if (args.part, args.parts) != (0, 1):
        raise UsageError("--entry shards sets --part and --parts itself: one part per task (--nodes x --tasks-per-node)")
    return ShardWriting(run=make_shards.run_from(args), staging=args.staging)


# Each entry's arguments: its command's parser, and the parsed arguments -> the value ENTRIES[entry].run takes.
ENTRY_ARGUMENTS: dict[str, tuple[Callable[..., argparse.ArgumentParser], Callable[[argparse.Namespace], Any]]] = {
    "pretrain": (pretrain.build_parser, _pretrain_run),
    "finetune": (finetune.build_parser, _finetune_run),
    "eval": (evaluate.build_parser, evaluate.run_from),
    "features": (extract_features.build_parser, extract_features.request_from),
    "shards": (make_shards.build_parser, _shard_writing),
    "check": (_check_parser, lambda args: CheckOptions(timeout_s=args.timeout_s)),
}


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The submission's own options (cluster shape, queue, run)."""
    # no abbreviations: an entry's own option (evaluate.py's --out) must not be taken for --output-dir
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False, add_help=add_help)
    p.add_argument("--entry", choices=sorted(ENTRIES), default="pretrain",
                   help="; ".join(f"{k}: {v.help}" for k, v in sorted(ENTRIES.items())))
    shape = p.add_argument_group("cluster shape")
    shape.add_argument("--nodes", type=int, default=1)
    shape.add_argument("--gpus-per-node", type=int, default=8, help="one task per GPU; 0 for CPU-only nodes")
    shape.add_argument("--tasks-per-node", type=int, default=None, help="only for --gpus-per-node 0 (default 1)")
    shape.add_argument("--cpus-per-task", type=int, default=None)
    shape.add_argument("--mem", default=None, help="memory per node, SLURM syntax (400G, 0 = all)")
    queue = p.add_argument_group("queue")
    queue.add_argument("--partition")
    queue.add_argument("--account")
    queue.add_argument("--qos")
    queue.add_argument("--constraint")
    queue.add_argument("--time", default="24:00:00", help="time limit per job (requeued until the run is done)")
    queue.add_argument("--signal-delay-s", type=int, default=120,
                       help="SIGUSR2 this long before the time limit: the run saves at the next step and requeues; "
                       "training gets half of it as train.stop_timeout_s (to reach the step boundary) at most")
    queue.add_argument("--max-timeouts", type=int, default=20, help="requeues after time limits before giving up")
    run = p.add_argument_group("run")
    run.add_argument("--job-name", default="egovlpv2")
    run.add_argument("--output-dir", type=Path, default=None, help="run directory (default: from the config)")
    run.add_argument("--cluster", choices=("slurm", "local", "debug"), default="slurm",
                     help="local: tasks as subprocesses of this machine; debug: in this process")
    run.add_argument("--dry-run", action="store_true", help="print the sbatch script and resolved config only")
    return p


def entry_parser(name: str) -> argparse.ArgumentParser:
    """The submission's options and those of the entry's command, in one parser."""
    own = ENTRY_ARGUMENTS[name][0](add_help=False)
    return argparse.ArgumentParser(prog=f"egovlpv2-submit --entry {name}", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
                                   parents=[build_parser(add_help=False), own])


def main(argv=None) -> int:
    name = build_parser(add_help=False).parse_known_args(argv)[0].entry
    args = entry_parser(name).parse_args(argv)
    entry = ENTRIES[name]
    spec = ClusterSpec(
        nodes=args.nodes, gpus_per_node=args.gpus_per_node, tasks_per_node=args.tasks_per_node,
        cpus_per_task=args.cpus_per_task, mem=args.mem, partition=args.partition, account=args.account,
        qos=args.qos, constraint=args.constraint, time=args.time, job_name=args.job_name,
        signal_delay_s=args.signal_delay_s, max_timeouts=args.max_timeouts,
    )
    value = ENTRY_ARGUMENTS[name][1](args)  # the recipe resolves here, before anything is queued
    prepared, fitted = fit_stop_timeout(entry.prepare(value, args.output_dir), spec.signal_delay_s)
    not_needed = entry.preflight(prepared, spec.world_size) if entry.preflight else None
    plan = entry.plan(prepared, spec.world_size) if entry.plan and not not_needed else None
    if args.dry_run:
        print(f"# sbatch script ({spec.world_size} tasks; the code snapshot goes to {prepared.output_dir}/code/<stamp>)")
        print(sbatch_script(spec, prepared.output_dir))
        print(f"# every task runs {entry.run.__module__}.{entry.run.__qualname__}({type(value).__name__}) "
              f"in {Path.cwd()}")
        print("# resolved config")
        print(yaml.safe_dump(prepared.resolved_config, sort_keys=False))
        for line in (fitted, not_needed or plan):
            if line:
                print(f"# {line}")
        return 0
    if not_needed:
        print(not_needed)
        return 0
    submitted = submit(entry.run, prepared.value, spec, prepared.output_dir, cluster=args.cluster)
    print(submitted.describe(), flush=True)
    if fitted:
        print(fitted, flush=True)
    if plan:
        print(plan, flush=True)
    if args.cluster == "debug":
        submitted.job.result()
    return 0


def cli() -> int:
    """The console script: a user error is one line on stderr and exit status 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
