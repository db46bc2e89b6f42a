"""What an elastic loader resume costs in the main process: merging the used-sample bitmaps and planning a stage.

On an EgoClip-sized manifest (3.85M samples by default, 1000 per shard), with a third of the epoch used:
CPU seconds to encode and decode the bitmap each rank stores in its checkpoint, its size (shard-contiguous
use, as a run reads shards, and a worst case with a random half used), and the time to plan one rank's share
of the rest of the epoch. Planning reads no shard; the workers then read the shards of their chunks.
"""

import argparse
import time

import numpy as np

from egovlpv2.data.elastic_epoch import decode_bitmap, encode_bitmap, plan_stage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=3_850_000)
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--world-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    names = [f"egoclip-{i:06d}.tar" for i in range(args.samples // args.per_shard)]
    counts = {n: args.per_shard for n in names}
    offsets = {n: i * args.per_shard for i, n in enumerate(names)}
    total = len(names) * args.per_shard
    used = np.zeros(total, dtype=bool)
    used[: total // 3] = True
    began = time.process_time()
    text = encode_bitmap(used)
    encode_s = time.process_time() - began
    began = time.process_time()
    decode_bitmap(text, total)
    decode_s = time.process_time() - began
    random_half = encode_bitmap(np.random.default_rng(0).random(total) < 0.5)
    began = time.process_time()
    plan = plan_stage(1, used, names, offsets, counts, 0, 0, 0, args.world_size, args.workers, args.batch_size)
    plan_s = time.process_time() - began
    print(f"{total} samples: bitmap encode {encode_s:.3f} s, decode {decode_s:.3f} s, {len(text) / 1e3:.1f} kB "
          f"(random half used: {len(random_half) / 1e3:.0f} kB); plan of one rank of {args.world_size} x "
          f"{args.workers} workers: {plan_s:.2f} s, {plan.num_batches} batches per rank")


if __name__ == "__main__":
    main()
