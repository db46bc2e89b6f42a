"""Extraction throughput of each feature preset: windows per CPU-second (and per wall-second), decode,
transform and model together, as ``egovlpv2-extract-features`` runs them.

    python benchmarks/bench_feature_presets.py                       # base model (random weights), CPU
    python benchmarks/bench_feature_presets.py --model egovlpv2-tiny --seconds 4   # a quick check
    python benchmarks/bench_feature_presets.py --device cuda --precision bf16 --seconds 120 --batch-size 64

The video is generated: 30 fps, 256 x 456 (an ego4d_256 frame), ``--seconds`` long, one clip. EgoNLQ runs
the fused upper layers once per window and query (``--queries``); its figure counts windows, not
window-query pairs. CPU time is the process's (all threads).
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import egovlpv2
from egovlpv2.data.tokenizer import build_bpe_tokenizer, load_tokenizer
from egovlpv2.eval.feature_presets import PRESETS
from egovlpv2.eval.features import ClipJob, extract
from egovlpv2.eval.nlq_records import NLQQuery
from egovlpv2.eval.runtime import AMP_DTYPES, EvalContext
from egovlpv2.shards.synthetic import write_video


def make_video(path: Path, seconds: float) -> None:
    ys, xs = np.mgrid[0:256, 0:456]
    frames = []
    for n in range(int(seconds * 30)):
        frame = np.stack([(xs + 3 * n) % 256, (ys + 2 * n) % 256, np.full_like(xs, (5 * n) % 256)], axis=-1)
        frames.append(frame.astype(np.uint8))
    write_video(path, frames, 30, gop=30)


def measure(name: str, args, video: Path, tokenizer, root: Path) -> dict:
    preset = PRESETS[name]
    torch.manual_seed(0)
    ctx = EvalContext(torch.device(args.device), amp_dtype=AMP_DTYPES[args.precision])
    model = egovlpv2.create_model(args.model, num_frames=preset.frames_per_window).to(ctx.device).eval()
    queries = [NLQQuery(f"where did i put the cup {q}", q) for q in range(args.queries)] if preset.needs_queries else []
    job = ClipJob("clip", video, 0.0, args.seconds, queries)
    out = root / name
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    cpu, wall = time.process_time(), time.perf_counter()
    extract(preset, model, [job], out, ctx, tokenizer=tokenizer, batch_size=args.batch_size)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    windows = json.loads((out / "clip.json").read_text())["num_windows"]
    return {"preset": name, "frames_per_window": preset.frames_per_window, "windows": windows,
            "queries": len(queries), "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "windows_per_cpu_s": round(windows / cpu, 3), "windows_per_wall_s": round(windows / wall, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="egovlpv2-base")
    p.add_argument("--seconds", type=float, default=2.5)
    p.add_argument("--queries", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=sorted(AMP_DTYPES), default="fp32")
    p.add_argument("--presets", nargs="+", default=["egonlq", "egomq", "dense"], choices=sorted(PRESETS))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_video(root / "video.mp4", args.seconds)
        build_bpe_tokenizer([f"where did i put the cup {q}" for q in range(50)], root / "tokenizer", vocab_size=300)
        tokenizer = load_tokenizer(str(root / "tokenizer"))
        print(json.dumps({"model": args.model, "device": args.device, "precision": args.precision,
                          "threads": torch.get_num_threads(), "seconds": args.seconds}))
        for name in args.presets:
            print(json.dumps(measure(name, args, root / "video.mp4", tokenizer, root)), flush=True)


if __name__ == "__main__":
    main()
