"""The shard writer against bare FFmpeg, in one run on the same generated source and clips.

  python benchmarks/bench_make_shards.py --work /tmp/bench_make_shards [--chunk-s 120] [--profile]

Builds (once, cached in --work) a source chunk like the commonly shared 256 px Ego4D chunks (456x256,
30 fps, x264 veryfast crf 23, GOP 250, B-frames, CABAC; the moving texture of bench_loader.py) and a csv
of ~1 s clips, one in every 2 s slot of the chunk (no two overlap). Then measures, in source seconds (the
clips' durations) per CPU second:
- the limit: one ``ffmpeg`` process, one thread everywhere, decoding the whole chunk once and encoding
  exactly the clips' frames at make_shards' default options (short side 256, GOP 8, no B-frames, CAVLC);
- the same limit through PyAV, i.e. the FFmpeg and x264 builds that make_shards itself links (the system
  ``ffmpeg`` may be another version): one decoder and one encoder thread, the whole chunk decoded once,
  the clips' frames fed to one encoder, no per-frame work beyond the two calls;
- the writer: make_shards (one worker, in this process) on the same csv, twice, checking that both runs
  wrote the same bytes;
and prints the ratio writer / limit. CPU time is the process's (and ffmpeg's, a reaped child's) user +
system time, so other load on the machine does not count. ``--profile`` also prints the writer's top
functions under cProfile.
"""
import argparse
import cProfile
import hashlib
import io
import json
import pstats
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_loader import clip_row, source_chunk  # noqa: E402
from egovlpv2.shards.egoclip_csv import write_egoclip  # noqa: E402
from egovlpv2.shards.make import ShardRun, make_shards  # noqa: E402
from egovlpv2.shards.transcode import EncodeOptions  # noqa: E402

UID = "bench-video"


def prepare(work: Path, chunk_s: float) -> tuple[Path, list[dict]]:
    chunk = source_chunk(work, chunk_s, UID)
    rng = random.Random(0)
    rows = [clip_row(i, UID, round(2 * i + rng.uniform(0, 0.7), 3), chunk_s, rng) for i in range(int(chunk_s // 2))]
    write_egoclip(work / "bench.csv", rows)
    return chunk, rows


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_ffmpeg(chunk: Path, rows: list[dict], opts: EncodeOptions) -> dict:
    """One ffmpeg, one thread: decode the chunk once, keep the frames in [clip_start, clip_end) of every clip,
    encode them as make_shards would (the source is 256 px already, so no scaling either way)."""
    keep = "+".join(f"between(t,{r['clip_start']},{r['clip_end']})*lt(t,{r['clip_end']})" for r in rows)
    x264 = f"keyint={opts.gop}:min-keyint={opts.gop}:scenecut=0:bframes=0:{opts.x264_params}"
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-threads", "1", "-i", str(chunk), "-filter_threads", "1",
           "-filter_complex_threads", "1", "-vf", f"select='{keep}',setpts=N/FRAME_RATE/TB", "-an",
           "-c:v", "libx264", "-threads", "1", "-preset", opts.preset, "-crf", str(opts.crf), "-x264-params", x264,
           "-pix_fmt", "yuv420p", "-f", "null", "-"]
    before, began = children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True)
    return {"cpu_s": children_cpu() - before, "wall_s": time.perf_counter() - began}


def bench_pyav_limit(chunk: Path, rows: list[dict], opts: EncodeOptions) -> dict:
    import av
    from av.video.frame import PictureType

    spans = [(r["clip_start"], r["clip_end"]) for r in rows]
    before, began = own_cpu(), time.perf_counter()
    with av.open(str(chunk)) as src, av.open(io.BytesIO(), "w", format="mp4") as out:
        decoder = src.streams.video[0]
        decoder.codec_context.thread_count = 1
        enc = out.add_stream("libx264", rate=decoder.average_rate)
        enc.width, enc.height, enc.pix_fmt = decoder.width, decoder.height, "yuv420p"
        enc.codec_context.thread_count = 1
        enc.options = {"preset": opts.preset, "crf": str(opts.crf), "x264-params":
                       f"keyint={opts.gop}:min-keyint={opts.gop}:scenecut=0:bframes=0:{opts.x264_params}"}
        k, n, time_base = 0, 0, 1 / decoder.average_rate
        for frame in src.decode(decoder):
            t = frame.time
            while k < len(spans) and t >= spans[k][1]:
                k += 1
            if k < len(spans) and t >= spans[k][0]:
                frame.pts, frame.time_base, frame.pict_type = n, time_base, PictureType.NONE
                out.mux(enc.encode(frame))
                n += 1
        out.mux(enc.encode())
    return {"cpu_s": own_cpu() - before, "wall_s": time.perf_counter() - began, "frames": n}


def bench_writer(work: Path, out: Path, profile: bool) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    run = ShardRun(task="egoclip", csv=str(work / "bench.csv"), videos=str(work / "videos"), out=str(out), workers=1,
                   samples_per_shard=100, progress=False)
    profiler = cProfile.Profile() if profile else None
    before, began = own_cpu(), time.perf_counter()
    if profiler:
        profiler.enable()
    manifest, ok = make_shards(run)
    if profiler:
        profiler.disable()
    cpu_s, wall_s = own_cpu() - before, time.perf_counter() - began
    assert ok, manifest["failures"]
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(12)
        print(text.getvalue())
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tar"))}
    return {"cpu_s": cpu_s, "wall_s": wall_s, "source_s": manifest["source_seconds"], "bytes": manifest["total_bytes"],
            "samples": manifest["total_samples"], "digests": digests}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/bench_make_shards")
    p.add_argument("--chunk-s", type=float, default=120.0)
    p.add_argument("--profile", action="store_true")
    a = p.parse_args()
    work = Path(a.work)
    chunk, rows = prepare(work, a.chunk_s)
    clip_s = sum(r["clip_end"] - r["clip_start"] for r in rows)
    opts = EncodeOptions()
    limit = bench_ffmpeg(chunk, rows, opts)
    pyav_limit = bench_pyav_limit(chunk, rows, opts)
    first = bench_writer(work, work / "shards_a", a.profile)
    second = bench_writer(work, work / "shards_b", False)
    limit_rate = clip_s / limit["cpu_s"]
    rates = [w["source_s"] / w["cpu_s"] for w in (first, second)]
    result = {"chunk_s": a.chunk_s, "clips": len(rows), "clip_s": round(clip_s, 3),
              "limit_source_s_per_cpu_s": round(limit_rate, 2), "limit_cpu_s": round(limit["cpu_s"], 2),
              "pyav_limit_source_s_per_cpu_s": round(clip_s / pyav_limit["cpu_s"], 2),
              "writer_source_s_per_cpu_s": [round(r, 2) for r in rates],
              "writer_cpu_s": [round(w["cpu_s"], 2) for w in (first, second)],
              "writer_source_s": first["source_s"],
              "ratio_writer_over_limit": [round(r / limit_rate, 3) for r in rates],
              "ratio_writer_over_pyav_limit": [round(r * pyav_limit["cpu_s"] / clip_s, 3) for r in rates],
              "byte_identical_runs": first["digests"] == second["digests"], "shard_bytes": first["bytes"]}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
