"""Check a shard directory: counts per shard, a decode of every sample (bad ones listed), size statistics;
or, with --contact-sheet, draw randomly chosen samples (frames, narration, tags, video id, time range) to a PNG."""
import argparse
import sys

from egovlpv2.cli import run_cli
from egovlpv2.shards.contact_sheet import contact_sheet
from egovlpv2.shards.inspect_stats import histogram, inspect_shards


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("shards", help="shard directory or URL (s3://, gs://, https://) with manifest.json")
    p.add_argument("--no-decode", action="store_true", help="only count and measure, do not decode")
    p.add_argument("--backend", choices=("auto", "decord", "pyav"), default="auto")
    p.add_argument("--bins", type=int, default=10)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--contact-sheet", metavar="PNG", help="draw randomly chosen samples to this PNG instead of checking")
    p.add_argument("--samples", type=int, default=16, help="samples on the contact sheet")
    p.add_argument("--frames", type=int, default=4, help="frames per sample on the contact sheet")
    p.add_argument("--seed", type=int, default=0, help="which samples the contact sheet draws")
    a = p.parse_args(argv)
    if a.contact_sheet:
        keys = contact_sheet(a.shards, a.contact_sheet, a.samples, a.frames, a.seed, a.backend)
        print(f"{len(keys)} samples drawn to {a.contact_sheet}")
        return 0
    report = inspect_shards(a.shards, decode=not a.no_decode, backend=a.backend, progress=not a.no_progress)
    print(f"task {report['task']}: {report['samples']} samples in {len(report['shards'])} shards "
          f"({report['manifest_failures']} rows failed at shard time, see failures.jsonl)")
    for shard in report["shards"]:
        note = "" if shard["ok"] else f"  MISMATCH: manifest says {shard['manifest']}"
        print(f"  {shard['name']}: {shard['samples']}{note}")
    print("clip duration (s):")
    print("\n".join(histogram(report["durations"], a.bins)))
    print("sample size (kB):")
    print("\n".join(histogram([s / 1e3 for s in report["sizes"]], a.bins)))
    print(f"bad samples: {len(report['bad'])}")
    for bad in report["bad"]:
        print(f"  {bad['shard']} {bad['id']}: {bad['reason']}")
    return 1 if report["bad"] or not all(s["ok"] for s in report["shards"]) else 0


def cli() -> int:
    """The console script: a user error is one line on stderr and exit status 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
