"""Submit pre-training, fine-tuning, feature extraction, shard writing, evaluation or a cluster check to SLURM
(or run it locally) through submitit.

  egovlpv2-submit --nodes 8 --partition gpu --time 24:00:00 --config egoclip train.max_steps=75000
  egovlpv2-submit --nodes 8 --dry-run --config egoclip          # print sbatch script + config
  egovlpv2-submit --entry check --nodes 2 --output-dir runs/check
  egovlpv2-submit --entry finetune --task epic_mir --time 12:00:00 init_checkpoint=... train.output_dir=...
  egovlpv2-submit --entry features --nodes 2 --preset egomq --checkpoint EgoVLPv2.pth --videos clips/ --annotations moments_val.json --out feats/mq
  egovlpv2-submit --entry shards --nodes 8 --gpus-per-node 0 --output-dir runs/shards \
      --csv egoclip.csv --videos /data/ego4d/v2/video_540ss --out /data/egoclip_shards

Arguments not listed here go to the entry point unchanged (for pre-training: those of egovlpv2-pretrain).
(``python -m egovlpv2.cli.submit`` and ``python launch/submit.py`` are the same command.)
A requeued job (time limit, preemption) resumes from its run directory's ``latest`` checkpoint; a
feature-extraction job skips the clips that have their features.
"""
import argparse
import sys
from pathlib import Path

from egovlpv2.cli import run_cli
from egovlpv2.cluster.entries import ENTRIES, fit_stop_timeout
from egovlpv2.cluster.submission import ClusterSpec, sbatch_script, submit


def build_parser() -> argparse.ArgumentParser:
    # no abbreviations: an entry's own option (evaluate.py's --out) must not be taken for --output-dir
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
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


def main(argv=None) -> int:
    args, entry_argv = build_parser().parse_known_args(argv)
    entry = ENTRIES[args.entry]
    spec = ClusterSpec(
        nodes=args.nodes, gpus_per_node=args.gpus_per_node, tasks_per_node=args.tasks_per_node,
        cpus_per_task=args.cpus_per_task, mem=args.mem, partition=args.partition, account=args.account,
        qos=args.qos, constraint=args.constraint, time=args.time, job_name=args.job_name,
        signal_delay_s=args.signal_delay_s, max_timeouts=args.max_timeouts,
    )
    prepared = entry.prepare(entry_argv, args.output_dir)  # the recipe resolves here, before anything is queued
    prepared, fitted = fit_stop_timeout(prepared, spec.signal_delay_s)
    not_needed = entry.preflight(prepared, spec.world_size) if entry.preflight else None
    plan = entry.plan(prepared, spec.world_size) if entry.plan and not not_needed else None
    if args.dry_run:
        print(f"# sbatch script ({spec.world_size} tasks; the code snapshot goes to {prepared.output_dir}/code/<stamp>)")
        print(sbatch_script(spec, prepared.output_dir))
        print(f"# {entry.target} {' '.join(prepared.argv)}")
        if prepared.resolved_config:
            print("# resolved config")
            print(prepared.resolved_config)
        for line in (fitted, not_needed or plan):
            if line:
                print(f"# {line}")
        return 0
    if not_needed:
        print(not_needed)
        return 0
    submitted = submit(entry.target, prepared.argv, spec, prepared.output_dir, cluster=args.cluster)
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
