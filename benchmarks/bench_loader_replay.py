"""What an exact loader resume costs: replaying consumed pairs (tar reading and metadata, no decoding).

A resumed worker re-reads its stream from the epoch start and passes over the pairs it had consumed. This
times exactly that work, ``PretrainStream.pair_stream`` for ``N`` pairs, in CPU seconds of this process (the
shards sit in the page cache after the first repeat; a cold read adds the disk time for the bytes listed), on
the shards that ``bench_loader.py`` caches (run it first). The stream continues into later epochs' shard
orders, so N may exceed the shard set.
"""
import sys
from pathlib import Path

import argparse
import itertools
import json
import time
from collections import Counter

from egovlpv2.data import DataConfig
from egovlpv2.data.pipeline import PretrainStream
from egovlpv2.data.manifest import ShardManifest


def replay_cpu_s(stream: PretrainStream, pairs: int) -> float:
    began = time.process_time()
    got = sum(1 for _ in itertools.islice(stream.pair_stream(0, 1, Counter()), pairs))
    assert got == pairs
    return time.process_time() - began


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", default="runs/bench_loader", help="bench_loader.py's cache")
    p.add_argument("--pairs", type=int, default=4000)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    work = Path(a.work)
    results = {}
    for fmt in ("mp4", "jpgs"):
        shards = work / f"shards_{fmt}"
        manifest = ShardManifest.read(str(shards))
        kb = manifest.fields["total_bytes"] / manifest.total_samples / 1e3
        cfg = DataConfig(shards=str(shards), tokenizer=str(work / "tokenizer"), shuffle_buffer=256)
        stream = PretrainStream(cfg, manifest.shard_counts(), 0, 1, 0, {}, 0)
        cpu = min(replay_cpu_s(stream, a.pairs) for _ in range(a.repeats))
        results[fmt] = {"pairs": a.pairs, "cpu_s": cpu, "s_per_1000": cpu / a.pairs * 1000, "kb_per_sample": kb}
        print(f"{fmt} shards ({kb:.0f} kB per sample): replaying {a.pairs} pairs takes {cpu:.2f} CPU s "
              f"= {cpu / a.pairs * 1000:.3f} s per 1000 pairs ({kb * a.pairs / 1e3:.0f} MB read)")
    (work / "replay_results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
