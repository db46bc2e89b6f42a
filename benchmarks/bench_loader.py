"""Loader throughput against the codec's limit and the original approach, on the same synthetic source video.

Builds (once, cached in --work) a 600 s, 256 px, 30 fps H.264 chunk with moving texture, a csv of ~1 s
clips inside it, and shards of those clips in both formats (mp4 and packed JPEGs), recording make_shards
throughput in source-video seconds per CPU second. Then measures, in one run, in clips per CPU second (one
core), for 4 and for 16 frames:
- the limit: bare decoding of exactly the frames the loader samples from the same shards, clips in memory,
  one thread, no conversion or resize: PyAV/libavcodec from the key frame before each target, carrying on
  within a GOP (``egovlpv2.data.video_io.pyav_frames``); for JPEG shards, libjpeg decoding the chosen JPEGs;
- the full loader with each decode backend: anchor + partner clips, 224 px crops, tokenized text, batches out
  of a multi-worker DataLoader; and the ratio loader / limit;
- baseline: OpenCV opens the chunk and seeks to each frame of a clip (one decoder thread).
CPU time includes the DataLoader workers (reaped children), so other load on the machine does not inflate it.

With --s3 it instead compares storage: the same mp4 shards read by the full loader from local disk and from
an S3-compatible server on 127.0.0.1 (moto, started here; its own CPU time is not counted, as a remote
store's would not be), alternating the two --repeats times in one run.
"""
import sys
from pathlib import Path

import argparse
import json
import os
import random
import resource
import time

import cv2
import numpy as np

from egovlpv2.data import DataConfig, build_pretrain_loader
from egovlpv2.data.manifest import ShardManifest
from egovlpv2.data.pipeline import frames_member
from egovlpv2.data.stream import parse_meta, read_tar
from egovlpv2.data.video_io import pyav_frames, unpack_jpegs
from egovlpv2.shards.egoclip_csv import write_egoclip
from egovlpv2.data.sampling import segment_indices
from egovlpv2.shards.make import ShardRun, make_shards
from egovlpv2.shards.synthetic import NOUNS, VERBS, narration, write_video
from egovlpv2.data.tokenizer import build_bpe_tokenizer
from egovlpv2.shards.transcode import EncodeOptions
from egovlpv2.data.transforms import train_transform


def cpu_seconds(exclude: tuple[int, ...] = ()) -> float:
    """CPU time of this process and its live children (the DataLoader workers) but ``exclude``, from /proc."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total, me, tick = own.ru_utime + own.ru_stime, os.getpid(), os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and int(stat.parent.name) not in exclude:  # ppid; utime, stime at 11 and 12
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def source_frames(seconds: float, fps: float, width: int, height: int, seed: int = 0):
    """A camera panning and zooming over a fine random texture, with a moving block: sub-pixel motion
    everywhere, so the codec spends real bits (~0.7 Mbit/s at 456x256, crf 23), like head-mounted video."""
    rng = np.random.default_rng(seed)
    world = cv2.resize(rng.integers(0, 255, (height * 2 // 3, width, 3), dtype=np.uint8), (width * 3, height * 2),
                       interpolation=cv2.INTER_CUBIC)
    for n in range(int(seconds * fps)):
        t = n / fps
        scale = 1 + 0.1 * np.sin(t / 3)
        pan_x, pan_y = width * (1 + 0.8 * np.sin(t / 7)), height * (0.5 + 0.4 * np.sin(t / 5))
        frame = cv2.warpAffine(world, np.float32([[scale, 0, -pan_x], [0, scale, -pan_y]]), (width, height),
                               flags=cv2.INTER_LINEAR)
        x, y = int(width / 2 + width / 3 * np.sin(t * 0.75)), int(height / 2 + height / 3 * np.cos(t * 0.55))
        cv2.rectangle(frame, (x - 20, y - 20), (x + 20, y + 20), (int(n * 7) % 255, 80, 200), -1)
        yield frame


def source_chunk(work: Path, chunk_s: float, uid: str = "bench-video") -> Path:
    """The benchmark's source chunk ``work/videos/{uid}/0.mp4``, encoded once."""
    chunk = work / "videos" / uid / "0.mp4"
    if not chunk.is_file():
        chunk.parent.mkdir(parents=True, exist_ok=True)
        print(f"encoding a {chunk_s:.0f} s 456x256 30 fps source chunk ...", flush=True)
        # Like the commonly shared 256 px Ego4D chunks: ffmpeg's default GOP (250), B-frames and CABAC.
        write_video(chunk, source_frames(chunk_s, 30.0, 456, 256), 30.0, gop=250, crf=23, preset="veryfast", bframes=3)
    return chunk


def clip_row(i: int, uid: str, start: float, chunk_s: float, rng: random.Random) -> dict:
    """An EgoClip row for a clip of 0.8-1.2 s from ``start``, with a random narration."""
    verb, noun = rng.randrange(len(VERBS)), rng.randrange(len(NOUNS))
    return {"clip_idx": i, "video_uid": uid, "video_dur": chunk_s, "narration_source": "narration_pass_1",
            "narration_ind": i, "narration_time": start + 0.5, "clip_start": start,
            "clip_end": round(start + rng.uniform(0.8, 1.2), 3), "clip_text": narration(verb, noun),
            "tag_verb": f"[{verb}]", "tag_noun": f"[{noun}]"}


def prepare(work: Path, chunk_s: float, clips: int, workers: int, rebuild: bool) -> dict:
    video_dir, uid = work / "videos", "bench-video"
    chunk = source_chunk(work, chunk_s, uid)
    rng = random.Random(0)
    rows = []
    for i in range(clips):
        rows.append(clip_row(i, uid, round(rng.uniform(0, chunk_s - 1.5), 3), chunk_s, rng))
    write_egoclip(work / "bench.csv", rows)
    if not (work / "tokenizer").is_dir():
        build_bpe_tokenizer([r["clip_text"] for r in rows], work / "tokenizer", 512)
    results = {"chunk": str(chunk), "rows": rows, "source_mbps": chunk.stat().st_size * 8 / chunk_s / 1e6}
    for fmt in ("mp4", "jpgs"):
        out = work / f"shards_{fmt}"
        if (out / "manifest.json").is_file() and not rebuild:
            manifest = json.loads((out / "manifest.json").read_text())
            results[fmt] = {"shards": str(out), "wall_s": float("nan"), "bytes": manifest["total_bytes"],
                            "source_s_per_cpu_s": manifest["source_s_per_cpu_s"], "samples": manifest["total_samples"]}
            continue
        for old in out.glob("records/*.json"):
            old.unlink()  # the shard records: every shard is rewritten, so the throughput is measured
        began = time.time()
        manifest, ok = make_shards(ShardRun(task="egoclip", csv=str(work / "bench.csv"), videos=str(video_dir),
                                            out=str(out), workers=workers, samples_per_shard=100, progress=False,
                                            encode=EncodeOptions(frame_format=fmt, jpeg_frames=8)))
        assert ok, manifest["failures"]
        results[fmt] = {"shards": str(out), "wall_s": time.time() - began, "bytes": manifest["total_bytes"],
                        "source_s_per_cpu_s": manifest["source_s_per_cpu_s"], "samples": manifest["total_samples"]}
    return results


def bench_baseline(chunk: str, rows: list, frames: int, img_size: int, limit: int) -> dict:
    """The original recipe: open the chunk, seek with OpenCV to each sampled frame, read it."""
    rng = random.Random(1)
    began_cpu, began = cpu_seconds(), time.time()
    for row in rows[:limit]:
        cap = cv2.VideoCapture(chunk, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        fps = cap.get(cv2.CAP_PROP_FPS)
        first, last = int(row["clip_start"] * fps), int(row["clip_end"] * fps)
        images = []
        for i in segment_indices(last - first, frames, True, rng):
            cap.set(cv2.CAP_PROP_POS_FRAMES, first + i)
            ok, bgr = cap.read()
            if not ok:
                raise RuntimeError(f"baseline failed to read frame {first + i}")
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        cap.release()
        train_transform(np.stack(images), img_size, (0.5, 1.0), True, rng)
    cpu, wall = cpu_seconds() - began_cpu, time.time() - began
    return {"clips": limit, "cpu_s": cpu, "wall_s": wall, "clips_per_cpu_s": limit / cpu, "clips_per_s": limit / wall}


def read_clips(shards: str, limit: int) -> list[tuple[str, bytes, int]]:
    """(kind, bytes, recorded frame count) of the first ``limit`` samples of the shards, in memory."""
    manifest, clips = ShardManifest.read(shards), []
    for name in manifest.shard_counts():
        for sample in read_tar(manifest.path(name)):
            clips.append(frames_member(sample, parse_meta(sample)))
            if len(clips) == limit:
                return clips
    return clips


def bench_limit(clips: list, frames: int) -> dict:
    """The codec's limit: the frames the loader would sample, decoded and nothing more (see the docstring)."""
    rng = random.Random(2)
    began = time.process_time()
    for kind, data, count in clips:
        choose = lambda n: segment_indices(n, frames, True, rng)  # noqa: E731
        if kind == "mp4":
            for _ in pyav_frames(data, choose, count):
                pass
        else:
            jpegs = unpack_jpegs(data)
            for i in set(choose(len(jpegs))):
                cv2.imdecode(np.frombuffer(jpegs[i], np.uint8), cv2.IMREAD_UNCHANGED)
    cpu = time.process_time() - began
    return {"clips": len(clips), "cpu_s": cpu, "clips_per_cpu_s": len(clips) / cpu}


def bench_loader(shards: str, tokenizer: str, frames: int, img_size: int, batch: int, workers: int,
                 backend: str, warmup: int = 3, exclude: tuple[int, ...] = (), batches: int = 0) -> dict:
    """Steady state: CPU time of the main process and the live workers between batch ``warmup`` and the last
    (the epoch's, or ``batches`` after the warm-up)."""
    cfg = DataConfig(shards=shards, tokenizer=tokenizer, num_frames=frames, img_size=img_size, batch_size=batch,
                     num_workers=workers, shuffle_buffer=64, decode_backend=backend)
    loader = build_pretrain_loader(cfg, 0, 1, 0)
    last = min(len(loader), warmup + batches) - 1 if batches else len(loader) - 1
    if last <= warmup:
        raise ValueError(f"{len(loader)} batches: too few to measure after {warmup} warm-up batches")
    clips, began = 0, time.time()
    for i, b in enumerate(loader):
        if i == warmup:  # batch `warmup` was made before this point: only the batches after it count
            began_cpu, began_wall = cpu_seconds(exclude), time.time()
        elif i > warmup:
            clips += b["video"].shape[0]  # anchors and partners: each is a decoded clip
        if i == last:
            cpu, wall = cpu_seconds(exclude) - began_cpu, time.time() - began_wall
            break
    return {"clips": clips, "cpu_s": cpu, "wall_s": wall, "clips_per_cpu_s": clips / cpu, "clips_per_s": clips / wall,
            "workers": workers, "backend": backend, "total_wall_s": time.time() - began}


def bench_storage(prep: dict, work: Path, a) -> dict:
    """The loader on the mp4 shards from local disk and from a local S3 server, alternated ``a.repeats`` times."""
    from tests.s3_server import start_server, stop_server

    proc, server = start_server()
    try:
        os.environ.update(server.env())  # the standard variables: the DataLoader workers inherit them
        fs = server.filesystem()
        fs.mkdir("bench")
        fs.put(prep["mp4"]["shards"].rstrip("/") + "/", "bench/shards_mp4/", recursive=True)
        runs = {"local": [], "s3": []}
        for _ in range(a.repeats):
            for where, shards in (("local", prep["mp4"]["shards"]), ("s3", "s3://bench/shards_mp4")):
                res = bench_loader(shards, str(work / "tokenizer"), a.frames, a.img_size, a.batch, a.workers,
                                   a.backend, exclude=(proc.pid,))
                runs[where].append(res)
                print(f"loader from {where:5s} ({a.backend}, {a.workers} workers): {res['clips_per_cpu_s']:.2f} "
                      f"clips per CPU s, {res['clips_per_s']:.2f} clips/s wall ({res['clips']} clips)", flush=True)
    finally:
        stop_server(proc)
    best = {k: max(r["clips_per_cpu_s"] for r in v) for k, v in runs.items()}
    print(f"s3 / local: {best['s3'] / best['local']:.1%} of local clips per CPU s (best of {a.repeats} each)")
    return {"runs": runs, "best_clips_per_cpu_s": best, "s3_vs_local": best["s3"] / best["local"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", default="runs/bench_loader", help="cache for the source video and shards")
    p.add_argument("--chunk-seconds", type=float, default=600.0)
    p.add_argument("--clips", type=int, default=400)
    p.add_argument("--baseline-clips", type=int, default=40)
    p.add_argument("--frames", type=int, default=4, help="the baseline's frames per clip")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16, help="anchors per batch (the batch holds twice as many clips)")
    p.add_argument("--batches", type=int, default=10, help="batches timed per loader run after 2 warm-up (0: the epoch)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rebuild", action="store_true", help="rewrite cached shards (measures make_shards again)")
    p.add_argument("--s3", action="store_true", help="only compare local disk with a local S3 server (see above)")
    p.add_argument("--repeats", type=int, default=2, help="--s3: alternating passes per location")
    p.add_argument("--backend", default="auto", help="--s3: the decode backend")
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    prep = prepare(work, a.chunk_seconds, a.clips, a.workers, a.rebuild)
    if a.s3:
        results = {"args": vars(a), "storage": bench_storage(prep, work, a)}
        (work / "results_s3.json").write_text(json.dumps(results, indent=1))
        return 0
    for fmt in ("mp4", "jpgs"):
        print(f"make_shards ({fmt}): {prep[fmt]['samples']} clips, {prep[fmt]['bytes'] / 1e6:.1f} MB, "
              f"{prep[fmt]['source_s_per_cpu_s']:.1f} source s per CPU s, {prep[fmt]['wall_s']:.1f} s wall")
    print(f"source: {a.chunk_seconds:.0f} s chunk, 456x256, 30 fps, {prep['source_mbps']:.2f} Mbit/s")
    results = {"args": vars(a), "source_mbps": prep["source_mbps"], "make_shards": {f: prep[f] for f in ("mp4", "jpgs")}}
    if a.baseline_clips:
        base = bench_baseline(prep["chunk"], prep["rows"], a.frames, a.img_size, a.baseline_clips)
        results["baseline"] = base
        print(f"baseline (OpenCV seek into a {a.chunk_seconds:.0f} s chunk, {a.frames} frames): "
              f"{base['clips_per_cpu_s']:.2f} clips per CPU s ({base['clips']} clips)")
    clips = {fmt: read_clips(prep[fmt]["shards"], a.clips) for fmt in ("mp4", "jpgs")}
    print("| frames | shards | pipeline | clips per CPU s | loader / limit |\n| ---: | --- | --- | ---: | ---: |")
    for frames in (4, 16):
        for fmt, backends in (("mp4", ("pyav", "decord", "torchcodec")), ("jpgs", ("auto",))):
            limit = bench_limit(clips[fmt], frames)
            results[f"limit_{fmt}_{frames}"] = limit
            print(f"| {frames} | {fmt} | limit (bare decoding, 1 thread) | {limit['clips_per_cpu_s']:.1f} | |", flush=True)
            for backend in backends:
                res = bench_loader(prep[fmt]["shards"], str(work / "tokenizer"), frames, a.img_size, a.batch,
                                   a.workers, backend, warmup=2, batches=a.batches)
                res["vs_limit"] = res["clips_per_cpu_s"] / limit["clips_per_cpu_s"]
                results[f"loader_{fmt}_{backend}_{frames}"] = res
                print(f"| {frames} | {fmt} | loader, {backend}, {a.workers} workers | {res['clips_per_cpu_s']:.1f} "
                      f"| {res['vs_limit']:.0%} |", flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
