"""Metadata + videos -> webdataset tar shards with a manifest (see README, "Preparing data")."""
import argparse
import sys

from egovlpv2.cli import run_cli
from egovlpv2.shards.make import TASKS, ShardRun
from egovlpv2.shards.merge import format_summary
from egovlpv2.shards.publish import write_shards_to
from egovlpv2.shards.transcode import EncodeOptions


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """egovlpv2-make-shards' arguments (also those of ``egovlpv2-submit --entry shards``)."""
    p = argparse.ArgumentParser(description=__doc__, add_help=add_help)
    p.add_argument("--task", choices=TASKS, default="egoclip")
    p.add_argument("--csv", default="", help="egoclip.csv | EPIC_100_retrieval_test.csv | CharadesEgo_v1_test_only1st.csv")
    p.add_argument("--json", default="", help="egomcq.json (task egomcq)")
    p.add_argument("--sentence-csv", default="", help="EPIC_100_retrieval_test_sentence.csv (task epic_mir)")
    p.add_argument("--relevancy", default="", help="caption_relevancy_EPIC_100_retrieval_test.pkl (task epic_mir)")
    p.add_argument("--classes", default="", help="Charades_v1_classes.txt (task charades_ego)")
    p.add_argument("--videos", required=True, help="video root: {uid}.mp4 files or {uid}/{k}.mp4 chunks")
    p.add_argument("--out", required=True, help="shard directory or s3:// / gs:// URL prefix (manifest.json goes there)")
    p.add_argument("--staging", default=None, help="local directory, private to you (mode 0700), where shards for a URL "
                   "--out are written before upload (default: one in the temp directory, found again by a rerun; "
                   "removed after success)")
    p.add_argument("--workers", type=int, default=ShardRun.__dataclass_fields__["workers"].default_factory())
    p.add_argument("--samples-per-shard", type=int, default=0, help="default 1000 (egoclip), 200 (eval)")
    p.add_argument("--chunk-seconds", type=float, default=600.0)
    p.add_argument("--limit", type=int, default=None, help="only the first N valid rows (trials)")
    p.add_argument("--seed", type=int, default=0, help="order of scene windows across shards")
    p.add_argument("--num-verbs", type=int, default=118)
    p.add_argument("--num-nouns", type=int, default=582)
    p.add_argument("--max-failure-fraction", type=float, default=0.05)
    p.add_argument("--short-side", type=int, default=256, help="0 keeps the source size")
    p.add_argument("--fps-cap", type=float, default=0.0)
    p.add_argument("--gop", type=int, default=8)
    p.add_argument("--crf", type=int, default=23)
    p.add_argument("--preset", default="veryfast")
    p.add_argument("--x264-params", default=EncodeOptions.x264_params, help="extra x264 options ('' for none)")
    p.add_argument("--frame-format", choices=("mp4", "jpgs"), default="mp4")
    p.add_argument("--jpeg-frames", type=int, default=8)
    p.add_argument("--part", type=int, default=0, help="write only this part of the plan (0-based; see --parts)")
    p.add_argument("--parts", type=int, default=1, help="split the shards over this many runs (cluster nodes)")
    p.add_argument("--plan-only", action="store_true",
                   help="only plan: print and write the summary (rows, videos found and missing), no shards")
    p.add_argument("--no-progress", action="store_true")
    return p


def run_from(a: argparse.Namespace) -> ShardRun:
    return ShardRun(task=a.task, videos=a.videos, out=a.out, csv=a.csv, json=a.json, sentence_csv=a.sentence_csv,
                    relevancy=a.relevancy, classes=a.classes, workers=a.workers, samples_per_shard=a.samples_per_shard,
                    chunk_seconds=a.chunk_seconds, limit=a.limit, seed=a.seed, num_verbs=a.num_verbs,
                    num_nouns=a.num_nouns, max_failure_fraction=a.max_failure_fraction, progress=not a.no_progress,
                    part=a.part, parts=a.parts, plan_only=a.plan_only,
                    encode=EncodeOptions(short_side=a.short_side, fps_cap=a.fps_cap, gop=a.gop, crf=a.crf,
                                         preset=a.preset, x264_params=a.x264_params, frame_format=a.frame_format, jpeg_frames=a.jpeg_frames))


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    run = run_from(a)
    manifest, summary, ok, uploaded = write_shards_to(run, a.staging)
    if summary is None:
        print(f"part {a.part} of {a.parts} done; the last part to finish writes {a.out}/manifest.json")
        return 0
    print("\n".join(format_summary(summary)))
    if a.plan_only:
        return 0
    if uploaded:
        print(f"uploaded {uploaded} shards to {a.out}")
    print(f"{manifest['source_s_per_cpu_s']} source s per CPU s; failed rows in {a.out}/failures.jsonl")
    if not ok:
        print(f"error: {summary['rows_failed']} of {summary['rows_planned']} rows failed, more than "
              f"{run.max_failure_fraction:.1%} (see {a.out}/summary.json and failures.jsonl)", file=sys.stderr)
        return 1
    return 0


def cli() -> int:
    """The console script: a user error is one line on stderr and exit status 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
