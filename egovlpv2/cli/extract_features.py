"""Extract EgoVLPv2 features as the released EgoNLQ / EgoMQ sets were made, or dense features of any videos;
see docs/features.md for every setting of each preset and its source in the official code.

    egovlpv2-extract-features --preset egomq --checkpoint EgoVLPv2.pth --videos ego4d_256/ \
        --annotations moments_val.json --out feats/mq
    torchrun --nproc_per_node 8 -m egovlpv2.cli.extract_features --preset egonlq --checkpoint EgoVLPv2.pth \
        --videos ego4d_256/ --annotations nlq_val.json --tokenizer roberta-base/ --out feats/EgoVLPv2/val
    egovlpv2-extract-features --preset dense --windows-per-second 2 --frames 8 --checkpoint EgoVLPv2.pth \
        --videos my_videos/ --out feats/mine

Clip i goes to rank i % world_size. Clips whose features exist are skipped, so rerunning the same command
continues an interrupted run. On a cluster: `egovlpv2-submit --entry features` (requeued on time limits).
"""
import argparse
import sys
from pathlib import Path

from egovlpv2.cli import run_cli
from egovlpv2.eval.feature_presets import PRESETS
from egovlpv2.eval.feature_run import ExtractionRequest, run_extraction
from egovlpv2.eval.runtime import AMP_DTYPES


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """egovlpv2-extract-features' arguments (also those of ``egovlpv2-submit --entry features``)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                add_help=add_help)
    p.add_argument("--preset", required=True, choices=sorted(PRESETS))
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--videos", required=True, help="directory of {clip_uid}.mp4 or {video_uid}.mp4 files; for "
                   "dense without --annotations also a text file listing video paths, one per line")
    p.add_argument("--annotations", default=None, help="Ego4D MQ/NLQ json (required for egonlq)")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (egonlq)")
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="auto")
    p.add_argument("--windows-per-second", type=float, default=None, help="dense only (default 1.875)")
    p.add_argument("--frames", type=int, default=None, help="frames per window, dense only (default 16)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    p.add_argument("--precision", choices=sorted(AMP_DTYPES), default="fp32")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def request_from(args: argparse.Namespace) -> ExtractionRequest:
    def path(value):
        return Path(value) if value else None

    return ExtractionRequest(preset=args.preset, checkpoint=Path(args.checkpoint), videos=Path(args.videos),
                             out=Path(args.out), annotations=path(args.annotations), tokenizer=path(args.tokenizer),
                             model=args.model, windows_per_second=args.windows_per_second,
                             frames_per_window=args.frames, batch_size=args.batch_size, precision=args.precision)


def extract_features(argv=None, should_stop=None):
    """Extract as the command line says; ``should_stop()``, asked before each clip, ends the run early."""
    return run_extraction(request_from(parse_args(argv)), should_stop=should_stop)


def main(argv=None) -> int:
    extract_features(argv)
    return 0


def cli() -> int:
    """The console script: a user error is one line on stderr and exit status 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
