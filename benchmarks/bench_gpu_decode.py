"""NVDEC decoding through torchcodec (``device="cuda"``) against the CPU backends, on the same mp4 shards.

    python benchmarks/bench_gpu_decode.py --json OUT/decode.json    # on a GPU machine (benchmarks/gpu_check.sh)
    python benchmarks/bench_gpu_decode.py --cpu-smoke                # no GPU: every part, tiny, on the CPU

1. Clips: 1 s clips cut by ``egovlpv2.shards.transcode.cut_clip`` at make_shards' default encode options
   (456x256, GOP 8, CAVLC; the mp4 members of bench_loader.py's shards) from a generated source chunk. Built
   with PyAV and numpy only (no OpenCV on the GPU machine), cached in --work.
2. For 4 and 16 frames, the clips decoded one after another in one process at the frames the loader
   samples: PyAV, decord and torchcodec on the CPU (one thread: clips per CPU s, i.e. per core) and
   torchcodec on the GPU (clips/s of one process, output left on the GPU; and the device memory it takes:
   NVDEC's surfaces are not allocated through torch, so free device memory is compared before and after).
3. Sharing the GPU: the plain AMP training step (egovlpv2-base, 4 frames, 32 + 32 pairs, bf16,
   checkpointing) timed alone, then while a second process decodes 4-frame clips with NVDEC in a loop:
   the step's slowdown, and what the decoder reaches meanwhile.
Short clips are where NVDEC's per-clip start-up can make it slower than a CPU core: the figures say for
which clip lengths GPU decode pays.
"""
import argparse
import json
import random
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import torch

from egovlpv2.data.sampling import segment_indices
from egovlpv2.data.video_io import FrameDecoder, backend_usable
from egovlpv2.shards.transcode import EncodeOptions, Segment, cut_clip

CPU_BACKENDS = ("pyav", "decord", "torchcodec")


def make_clips(work: Path, chunk_s: float, count: int) -> list[tuple[str, bytes, int]]:
    """``count`` clips of about 1 s as (kind, member bytes, frame count), cut from a panning-texture chunk."""
    import av
    import numpy as np

    cache = work / f"clips_{count}.npz"
    if cache.is_file():
        saved = np.load(cache, allow_pickle=False)
        return [("mp4", saved[f"c{i}"].tobytes(), int(saved["counts"][i])) for i in range(count)]
    work.mkdir(parents=True, exist_ok=True)
    source, rng = work / "source.mp4", np.random.default_rng(0)
    world = np.repeat(np.repeat(rng.integers(0, 256, (200, 400, 3), dtype=np.uint8), 3, 0), 3, 1)
    with av.open(str(source), "w") as out:  # ffmpeg's default GOP (250) and B-frames, like the shared chunks
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 456, 256, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for n in range(int(chunk_s * 30)):
            x, y = int(300 + 250 * np.sin(n / 210)), int(150 + 120 * np.sin(n / 150))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(world[y:y + 256, x:x + 456]), format="rgb24")
            frame.pts = n
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    starts = random.Random(0)
    clips = []
    for _ in range(count):
        start = round(starts.uniform(0, chunk_s - 1.5), 3)
        data, timing = cut_clip([Segment(str(source), 0.0)], start, start + starts.uniform(0.8, 1.2), EncodeOptions())
        clips.append(("mp4", data, timing["num_frames"]))
    np.savez(cache, counts=np.array([c[2] for c in clips]),
             **{f"c{i}": np.frombuffer(c[1], np.uint8) for i, c in enumerate(clips)})
    return clips


def cpu_rate(clips: list, frames: int, backend: str) -> dict:
    """Clips per CPU second of one FrameDecoder backend (one thread) over ``clips``."""
    decoder, rng = FrameDecoder(backend), random.Random(0)
    decoder("mp4", clips[0][1], lambda n: [0], clips[0][2])  # imports the backend outside the timing
    began = time.process_time()
    for _, data, count in clips:
        decoder("mp4", data, lambda n: segment_indices(n, frames, True, rng), count)
    return {"clips_per_cpu_s": len(clips) / (time.process_time() - began)}


def gpu_decoder(data: bytes, device: str):
    from torchcodec.decoders import VideoDecoder

    return VideoDecoder(data, seek_mode="exact", device=device)


def gpu_rate(clips: list, frames: int, device: str) -> dict:
    """Clips/s (wall) and device memory of torchcodec decoding on ``device`` in this process."""
    rng = random.Random(0)
    on_cuda = device.startswith("cuda")
    free_before = torch.cuda.mem_get_info()[0] if on_cuda else 0
    gpu_decoder(clips[0][1], device).get_frames_at([0])  # the decoder's start-up, outside the timing
    began = time.perf_counter()
    for _, data, count in clips:
        decoder = gpu_decoder(data, device)
        n = min(decoder.metadata.num_frames or 0, count) if count else decoder.metadata.num_frames
        decoder.get_frames_at(segment_indices(n, frames, True, rng))
    if on_cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - began
    taken = (free_before - torch.cuda.mem_get_info()[0]) / 2**30 if on_cuda else 0.0
    return {"clips_per_s": len(clips) / wall, "device_memory_gib": taken}


def decode_loop(work: Path, count: int, frames: int, device: str) -> None:
    """The second process of part 3: decode until stdin closes, then print clips/s as JSON."""
    clips = make_clips(work, 0.0, count)
    rng, done = random.Random(1), 0
    gpu_decoder(clips[0][1], device).get_frames_at([0])
    print("ready", flush=True)
    import select

    began = time.perf_counter()
    while not select.select([sys.stdin], [], [], 0)[0]:
        _, data, count = clips[done % len(clips)]
        decoder = gpu_decoder(data, device)
        decoder.get_frames_at(segment_indices(min(decoder.metadata.num_frames, count), frames, True, rng))
        done += 1
    print(json.dumps({"clips_per_s": done / (time.perf_counter() - began)}), flush=True)


def shared_step(work: Path, a, device: torch.device) -> dict:
    """The training step alone and beside a process decoding with NVDEC."""
    from bench_step import plain_step_fn, sync
    from egovlpv2.losses import PretrainObjective
    from egovlpv2.model.config import resolve_model_config
    from synthetic_batch import random_pretrain_batch

    args = Namespace(model=a.model, frames=4, grad_checkpointing=True, checkpoint_blocks=None,
                     precision="bf16" if device.type == "cuda" else "fp32")
    cfg = resolve_model_config(a.model)
    cfg.video.num_frames = 4
    step, _ = plain_step_fn(args, cfg, device, PretrainObjective, "off")
    batch = random_pretrain_batch(2 * a.pairs, 4, cfg.video.img_size, cfg.text.vocab_size, 15, device=device)

    def timed(n: int, first: int) -> float:
        times = []
        for i in range(first, first + n):
            sync(device)
            began = time.perf_counter()
            step(batch, i).item()
            sync(device)
            times.append(time.perf_counter() - began)
        return sorted(times)[len(times) // 2]

    timed(a.warmup, 0)
    alone = timed(a.steps, a.warmup)
    proc = subprocess.Popen([sys.executable, __file__, "--decode-loop", "--work", str(work), "--clips", str(a.clips),
                             "--device", a.decode_device], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the decoding process did not start")
        shared = timed(a.steps, a.warmup + a.steps)
        proc.stdin.close()
        decoder = json.loads(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    return {"step_alone_s": alone, "step_shared_s": shared, "step_slowdown": shared / alone - 1,
            "decoder_clips_per_s_while_shared": decoder["clips_per_s"], "pairs": a.pairs, "model": a.model}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/gpu_decode"), help="cache for the source and clips")
    p.add_argument("--chunk-seconds", type=float, default=60.0)
    p.add_argument("--clips", type=int, default=120)
    p.add_argument("--model", default="egovlpv2-base")
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--cpu-smoke", action="store_true", help="tiny and on the CPU (torchcodec's CPU decoder as "
                                                           "the 'GPU' one): checks the plumbing only")
    p.add_argument("--json", type=Path)
    p.add_argument("--decode-loop", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.decode_loop:
        decode_loop(a.work, a.clips, 4, a.device)
        return 0
    if a.cpu_smoke:
        a.chunk_seconds, a.clips, a.model, a.pairs, a.steps, a.warmup = 10.0, 12, "egovlpv2-tiny", 2, 1, 1
    a.decode_device = "cpu" if a.cpu_smoke else "cuda"
    if not a.cpu_smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --cpu-smoke")
    clips = make_clips(a.work, a.chunk_seconds, a.clips)
    backends = [b for b in CPU_BACKENDS if backend_usable(b)]  # decord's wheel is not carried to the GPU machine
    rows = []
    for frames in (4, 16):
        row = {"frames": frames, "clips": len(clips)}
        for backend in backends:
            row[f"cpu_{backend}_clips_per_cpu_s"] = cpu_rate(clips, frames, backend)["clips_per_cpu_s"]
        gpu = gpu_rate(clips, frames, a.decode_device)
        row["gpu_clips_per_s"], row["gpu_memory_gib"] = gpu["clips_per_s"], gpu["device_memory_gib"]
        best_cpu = max(row[f"cpu_{b}_clips_per_cpu_s"] for b in backends)
        row["gpu_in_cpu_cores"] = row["gpu_clips_per_s"] / best_cpu
        rows.append(row)
    device = torch.device("cuda" if not a.cpu_smoke else "cpu")
    shared = shared_step(a.work, a, device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke run)"
    print(f"{name}, torch {torch.__version__}; {len(clips)} clips at make_shards' defaults (456x256, GOP 8, CAVLC)")
    print("| frames | " + " | ".join(f"{b} CPU (clips/CPU s)" for b in backends) + " | NVDEC (clips/s, 1 process) "
          "| NVDEC memory (GiB) | NVDEC = CPU cores |\n|" + " ---: |" * (len(backends) + 4))
    for r in rows:
        print(f"| {r['frames']} | " + " | ".join(f"{r[f'cpu_{b}_clips_per_cpu_s']:.1f}" for b in backends) +
              f" | {r['gpu_clips_per_s']:.1f} | {r['gpu_memory_gib']:.2f} | {r['gpu_in_cpu_cores']:.1f} |")
    print(f"training step ({shared['model']}, {shared['pairs']}+{shared['pairs']} pairs) alone "
          f"{shared['step_alone_s']:.3f} s, beside NVDEC decoding {shared['step_shared_s']:.3f} s "
          f"({100 * shared['step_slowdown']:+.1f}%); the decoder meanwhile "
          f"{shared['decoder_clips_per_s_while_shared']:.1f} clips/s")
    if a.json:
        a.json.write_text(json.dumps({"device": name, "rows": rows, "shared": shared}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
