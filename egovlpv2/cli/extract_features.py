"""Extract EgoMQ (dual-mode, 16-frame windows) or EgoNLQ (fusion-mode, 4-frame windows conditioned on each
query, plus query token features) features, one file per clip; see egovlpv2/eval/features.py for the layout.

    egovlpv2-extract-features --task egomq --checkpoint EgoVLPv2.pth --videos clips/ --out feats/mq
    torchrun --nproc_per_node 8 -m egovlpv2.cli.extract_features --task egonlq --checkpoint EgoVLPv2.pth \
        --videos ego4d/v1/full_scale --annotations nlq_val.json --tokenizer roberta-base/ --out feats/nlq

Clip i goes to rank i % world_size. Clips whose features exist are skipped, so rerunning the same command
continues an interrupted run. On a cluster: `egovlpv2-submit --entry features` (requeued on time limits).
"""
import argparse
import sys

from egovlpv2.cli import run_cli
from egovlpv2.dist.env import init_distributed, select_device
from egovlpv2.errors import UsageError
from egovlpv2.eval.checkpoints import load_eval_model
from egovlpv2.eval.features import DEFAULT_FRAMES, TASKS, ExtractionResult, clips_left, extract, plan_jobs
from egovlpv2.eval.runtime import AMP_DTYPES, current_context
from egovlpv2.model.config import resolve_model_config


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--videos", required=True, help="directory of {clip_uid}.mp4 or {video_uid}.mp4 files")
    p.add_argument("--annotations", default=None, help="Ego4D MQ/NLQ json (required for egonlq)")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (egonlq)")
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="auto")
    p.add_argument("--frames-per-window", type=int, default=None, help=f"default {DEFAULT_FRAMES}")
    p.add_argument("--windows-per-second", type=float, default=1.875)
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    p.add_argument("--text-max-len", type=int, default=32)
    p.add_argument("--precision", choices=sorted(AMP_DTYPES), default="fp32")
    return p.parse_args(argv)


# A rank that finished its share waits for the slowest one at the final count, for up to this long.
SHARE_WAIT_S = 24 * 3600


def extract_features(argv=None, should_stop=None) -> ExtractionResult:
    """Extract as the command line says. `should_stop()`, asked before each clip, ends the run early (the
    result's `stopped` is then set)."""
    args = parse_args(argv)
    env = init_distributed(timeout_s=SHARE_WAIT_S)
    ctx = current_context(select_device(env), AMP_DTYPES[args.precision])
    frames = args.frames_per_window or DEFAULT_FRAMES[args.task]
    model, recipe = load_eval_model(args.checkpoint, args.model, frames, ctx.device)
    tokenizer = None
    if args.task == "egonlq":
        if not args.tokenizer:
            raise UsageError("--tokenizer is required for egonlq")
        from egovlpv2.data.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer)
    jobs = plan_jobs(args.task, args.videos, args.annotations)
    written = extract(args.task, model, jobs, args.out, ctx, tokenizer=tokenizer, frames_per_window=frames,
                      windows_per_second=args.windows_per_second, img_size=resolve_model_config(recipe).video.img_size,
                      batch_size=args.batch_size, text_max_len=args.text_max_len, should_stop=should_stop)
    result = ExtractionResult(written=written, clips=len(jobs), left=clips_left(jobs, args.out, ctx))
    print(f"rank {ctx.rank}: wrote {len(written)} of {len(jobs)} clips to {args.out}"
          + (f"; stopped with {result.left} clips left, run again to continue" if result.stopped else ""))
    return result


def main(argv=None) -> int:
    extract_features(argv)
    return 0


def cli() -> int:
    """The console script: a user error is one line on stderr and exit status 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
