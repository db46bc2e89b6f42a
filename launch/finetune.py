"""Fine-tune on EPIC-KITCHENS-100 MIR or Charades-Ego with DeepSpeed (any launcher: deepspeed, torchrun, srun).

    deepspeed launch/finetune.py --task epic_mir --deepspeed ds_configs/zero2.json \
        init_checkpoint=EgoVLPv2_smallproj.pth data.train_shards=shards/epic_train \
        data.eval_shards=shards/epic_test data.tokenizer=roberta-base/ train.output_dir=runs/ft_epic
Recipes: configs/finetune/<task>.yaml (the paper's hyperparameters); `key=value` overrides follow.
Re-running the same command resumes from the run directory's latest checkpoint. SIGUSR1 or SIGTERM saves at
the next step and exits. On a cluster: `launch/submit.py --entry finetune` (requeued on time limits).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=("epic_mir", "charades_ego"))
    p.add_argument("--config", default=None, help="recipe YAML (default configs/finetune/<task>.yaml)")
    p.add_argument("--deepspeed", default="ds_configs/zero2.json", help="DeepSpeed JSON config")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    p.add_argument("overrides", nargs="*", help="section.key=value")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from egovlpv2.eval.finetune.config import load_finetune_config
    from egovlpv2.eval.finetune.run import run_finetuning
    from egovlpv2.train.checkpoint import install_stop_handlers

    cfg = load_finetune_config(args.config or args.task, args.overrides)
    if cfg.task != args.task:
        raise SystemExit(f"--task {args.task} but the recipe is for {cfg.task}")
    install_stop_handlers()
    result = run_finetuning(cfg, args.deepspeed)
    for step, metrics in sorted(result.evaluations.items()):
        print(f"step {step}: " + " ".join(f"{k}={v:.2f}" for k, v in metrics.items()))
    if result.stopped:
        print(f"stopped at step {result.step} on request; run the same command to resume", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
