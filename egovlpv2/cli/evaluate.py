"""Evaluate a checkpoint on EgoMCQ, EPIC-KITCHENS-100 MIR or Charades-Ego.

    egovlpv2-evaluate --task epic_mir --checkpoint EgoVLPv2_smallproj.pth --data shards/epic_mir \
        --tokenizer roberta-base/ --out results/epic_mir.json --report results/epic_mir_report
    torchrun --nproc_per_node 8 -m egovlpv2.cli.evaluate ...   # each sample is scored by exactly one rank

(``python -m egovlpv2.cli.evaluate`` and ``python egovlpv2-evaluate`` are the same command.)
"""
import argparse
import sys

from egovlpv2.cli import run_cli
from egovlpv2.eval.benchmarks import TASKS
from egovlpv2.eval.retrieval_report import DEFAULT_QUERIES, TOP_K
from egovlpv2.eval.run import EvalRun, evaluate as evaluate_run
from egovlpv2.eval.runtime import AMP_DTYPES


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """egovlpv2-evaluate's arguments (also those of ``egovlpv2-submit --entry eval``)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                add_help=add_help)
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
    p.add_argument("--report", default=None, metavar="DIR",
                   help=f"also write DIR/retrieval.png and DIR/index.html: the top {TOP_K} clips of some text "
                        f"queries, the correct ones marked, and the metrics")
    p.add_argument("--report-queries", type=int, default=DEFAULT_QUERIES, metavar="N", help="queries in the report")
    p.add_argument("--report-seed", type=int, default=0, help="which queries the report draws")
    return p


def run_from(a: argparse.Namespace) -> EvalRun:
    return EvalRun(task=a.task, checkpoint=a.checkpoint, data=a.data, tokenizer=a.tokenizer, model=a.model,
                   num_frames=a.num_frames, batch_size=a.batch_size, precision=a.precision, limit=a.limit,
                   num_workers=a.num_workers, allow_missing=a.allow_missing, out=a.out, report=a.report,
                   report_queries=a.report_queries, report_seed=a.report_seed)


def parse_args(argv=None) -> EvalRun:
    return run_from(build_parser().parse_args(argv))


def evaluate(argv=None) -> dict:
    """Evaluate as the command line says; every rank returns the task's results."""
    return evaluate_run(parse_args(argv))


def main(argv=None) -> int:
    evaluate(argv)
    return 0


def cli() -> int:
    """The console script: a user error is one line on stderr and exit status 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
