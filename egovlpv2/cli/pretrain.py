"""Pre-train EgoVLPv2 with DeepSpeed.

    deepspeed --module egovlpv2.cli.pretrain --deepspeed zero2 [--config demo | --config my_recipe.yaml] [key=value ...]
    torchrun --nproc_per_node 8 -m egovlpv2.cli.pretrain --deepspeed zero2 --config egoclip data.shards=...
    srun egovlpv2-pretrain --deepspeed zero3 --config egoclip ...

(``python launch/pretrain.py`` is the same command.)

Re-running the same command resumes from the run directory's latest checkpoint. SIGUSR1 or SIGTERM saves at
the next step and exits.
"""
import argparse
import sys

from egovlpv2.cli import run_cli
from egovlpv2.dist.signals import install_stop_handlers
from egovlpv2.train.config import load_pretrain_config


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """egovlpv2-pretrain's arguments (also those of ``egovlpv2-submit --entry pretrain``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=add_help)
    parser.add_argument("--deepspeed", "--deepspeed_config", dest="ds_config", default="zero2",
                        help="DeepSpeed JSON config (ZeRO stage, precision, clipping): a path or a shipped name")
    parser.add_argument("--config", default="demo", help="pre-training recipe: a YAML path or a shipped name")
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. train.max_steps=100 optim.lr=1e-4")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_pretrain_config(args.config, args.overrides)
    install_stop_handlers()
    from egovlpv2.train.pretrain import run_pretraining

    result = run_pretraining(cfg, args.ds_config)  # its input checks run before the process group forms
    if result.stopped:
        print(f"stopped at step {result.step} on request; run the same command to resume", file=sys.stderr)
    return 0


def cli() -> int:
    """The console script: a user error is one line on stderr and exit status 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
