"""Pre-train EgoVLPv2 with DeepSpeed.

    deepspeed launch/pretrain.py --deepspeed ds_configs/zero2.json [--config configs/pretrain/demo.yaml] [key=value ...]
    torchrun --nproc_per_node 8 launch/pretrain.py --deepspeed ds_configs/zero2.json --config egoclip data.shards=...
    srun python launch/pretrain.py --deepspeed ds_configs/zero3.json --config egoclip ...

Re-running the same command resumes from the run directory's latest checkpoint. SIGUSR1 or SIGTERM saves at
the next step and exits.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from egovlpv2.config import ConfigError  # noqa: E402
from egovlpv2.errors import UserError  # noqa: E402
from egovlpv2.train.checkpoint import install_stop_handlers  # noqa: E402
from egovlpv2.train.config import load_pretrain_config  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deepspeed", "--deepspeed_config", dest="ds_config", default="ds_configs/zero2.json",
                        help="DeepSpeed JSON config (ZeRO stage, precision, clipping)")
    parser.add_argument("--config", default="demo", help="pre-training recipe: a YAML path or a name in configs/pretrain")
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. train.max_steps=100 optim.lr=1e-4")
    args = parser.parse_args(argv)
    try:
        cfg = load_pretrain_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    install_stop_handlers()
    from egovlpv2.train.pretrain import run_pretraining

    try:
        result = run_pretraining(cfg, args.ds_config)
    except (UserError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.stopped:
        print(f"stopped at step {result.step} on request; run the same command to resume", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
