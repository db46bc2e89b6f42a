"""Fine-tune on EPIC-KITCHENS-100 MIR or Charades-Ego with DeepSpeed (any launcher: deepspeed, torchrun, srun).

    deepspeed --module egovlpv2.cli.finetune --task epic_mir --deepspeed zero2 \
        init_checkpoint=EgoVLPv2_smallproj.pth data.train_shards=shards/epic_train \
        data.eval_shards=shards/epic_test data.tokenizer=roberta-base/ train.output_dir=runs/ft_epic
Recipes: egovlpv2/recipes/finetune/<task>.yaml (the paper's hyperparameters); `key=value` overrides follow.
(``egovlpv2-finetune`` and ``python launch/finetune.py`` are the same command.)
Re-running the same command resumes from the run directory's latest checkpoint. SIGUSR1 or SIGTERM saves at
the next step and exits. On a cluster: `egovlpv2-submit --entry finetune` (requeued on time limits).
"""
import argparse
import sys

from egovlpv2.cli import run_cli


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """egovlpv2-finetune's arguments (also those of ``egovlpv2-submit --entry finetune``)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                add_help=add_help)
    p.add_argument("--task", required=True, choices=("epic_mir", "charades_ego"))
    p.add_argument("--config", default=None, help="recipe name or YAML (default: the shipped recipe of --task)")
    p.add_argument("--deepspeed", default="zero2", help="DeepSpeed JSON config: a path or a shipped name")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    p.add_argument("overrides", nargs="*", help="section.key=value")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def finetune(argv=None):
    """Fine-tune as the command line says; returns the run's result."""
    from egovlpv2.finetune.run import finetune as run

    args = parse_args(argv)
    result = run(args.task, args.config, args.overrides, args.deepspeed)
    for step, metrics in sorted(result.evaluations.items()):
        print(f"step {step}: " + " ".join(f"{k}={v:.2f}" for k, v in metrics.items()))
    if result.stopped:
        print(f"stopped at step {result.step} on request; run the same command to resume", file=sys.stderr)
    return result


def main(argv=None) -> int:
    finetune(argv)
    return 0


def cli() -> int:
    """The console script: a user error is one line on stderr and exit status 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
