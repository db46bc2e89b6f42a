"""Evaluate a checkpoint on EgoMCQ, EPIC-KITCHENS-100 MIR or Charades-Ego.

    egovlpv2-evaluate --task epic_mir --checkpoint EgoVLPv2_smallproj.pth --data shards/epic_mir \
        --tokenizer roberta-base/ --out results/epic_mir.json
    torchrun --nproc_per_node 8 -m egovlpv2.cli.evaluate ...   # each sample is scored by exactly one rank

(``python -m egovlpv2.cli.evaluate`` and ``python egovlpv2-evaluate`` are the same command.)
"""
import argparse
import sys
from pathlib import Path

from egovlpv2.cli import run_cli
from egovlpv2.dist.env import init_distributed, select_device
from egovlpv2.errors import MissingPathError
from egovlpv2.eval.checkpoints import load_eval_model
from egovlpv2.eval.report import write_report
from egovlpv2.eval.runtime import AMP_DTYPES, current_context
from egovlpv2.eval.tasks import TASKS, evaluate_task
from egovlpv2.model.config import resolve_model_config
from egovlpv2.storage import exists, join


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--checkpoint", required=True, help="our exported model file or the released EgoVLPv2*.pth")
    p.add_argument("--data", required=True, help="eval shard directory or URL (s3://, gs://, https://) from "
                   "egovlpv2-make-shards --task ...")
    p.add_argument("--tokenizer", required=True, help="local Hugging Face tokenizer directory (roberta-base for the released weights)")
    p.add_argument("--model", default="auto", help="model recipe or YAML; 'auto' infers base/smallproj from the checkpoint")
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16, help="clips per forward pass")
    p.add_argument("--precision", choices=sorted(AMP_DTYPES), default="fp32")
    p.add_argument("--limit", type=int, default=None, help="first N samples only (a trial; not comparable)")
    p.add_argument("--num-workers", type=int, default=4, help="decoding processes per rank")
    p.add_argument("--allow-missing", action="store_true",
                   help="evaluate although the shard manifest lists failed samples (counted in the results)")
    p.add_argument("--out", default=None, help="results JSON (default results/<task>.json); a .md table is written beside it")
    return p.parse_args(argv)


def check_paths(args) -> None:
    """The paths on the command line, checked before the process group forms: a missing one is one error
    line from each rank, not a traceback from deep inside a collective run."""
    if not Path(args.checkpoint).exists():
        raise MissingPathError(f"--checkpoint {args.checkpoint}: no such file")
    if not exists(join(args.data, "manifest.json")):  # a path or a URL (an unreachable store raises here)
        raise MissingPathError(f"--data {args.data}: no shard directory (manifest.json) there; write it with "
                               f"egovlpv2-make-shards --task {args.task}")
    if not Path(args.tokenizer).is_dir():
        raise MissingPathError(f"--tokenizer {args.tokenizer}: no such directory (a local Hugging Face tokenizer)")


def evaluate(argv=None) -> dict:
    """Evaluate as the command line says; every rank returns the task's results."""
    args = parse_args(argv)
    check_paths(args)
    from egovlpv2.data import DataConfig
    from egovlpv2.data.tokenizer import load_tokenizer

    env = init_distributed()
    ctx = current_context(select_device(env), AMP_DTYPES[args.precision])
    model, recipe = load_eval_model(args.checkpoint, args.model, args.num_frames, ctx.device)
    data_cfg = DataConfig(shards=args.data, num_frames=args.num_frames, img_size=resolve_model_config(recipe).video.img_size,
                          tokenizer=args.tokenizer, num_workers=args.num_workers)
    tokenizer = load_tokenizer(args.tokenizer)
    results = evaluate_task(args.task, model, args.data, data_cfg, tokenizer, ctx, args.batch_size, args.limit,
                            args.num_workers, args.allow_missing)
    if ctx.is_main:
        info = {"checkpoint": str(args.checkpoint), "model": recipe, "num_frames": args.num_frames,
                "data": str(args.data), "precision": args.precision, "limit": args.limit}
        out = Path(args.out or f"results/{args.task}.json")
        print(write_report(args.task, results, out, info))
        print(f"wrote {out} and {out.with_suffix('.md')}")
    return results


def main(argv=None) -> int:
    evaluate(argv)
    return 0


def cli() -> int:
    """The console script: a user error is one line on stderr and exit status 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
