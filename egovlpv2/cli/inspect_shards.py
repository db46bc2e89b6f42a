"""Check a shard directory: counts per shard, a decode of every sample (bad ones listed), size statistics."""
import argparse
import sys

from egovlpv2.cli import run_cli
from egovlpv2.data.inspect import histogram, inspect_shards


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("shards", help="shard directory with manifest.json")
    p.add_argument("--no-decode", action="store_true", help="only count and measure, do not decode")
    p.add_argument("--backend", choices=("auto", "decord", "pyav"), default="auto")
    p.add_argument("--bins", type=int, default=10)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    report = inspect_shards(a.shards, decode=not a.no_decode, backend=a.backend, progress=not a.no_progress)
    print(f"task {report['task']}: {report['samples']} samples in {len(report['shards'])} shards "
          f"({report['manifest_failures']} rows failed at shard time, see manifest.json)")
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
