"""The yardstick for our MFU: timm's ViT-B/16 training step at the token count of our video step.

    python benchmarks/bench_vit.py --gpu          # vit_base_patch16_224, bf16 autocast, AdamW, eager and compiled
    python benchmarks/bench_vit.py --cpu-smoke    # 2 images, fp32: checks the script runs, no figures worth keeping

Our base step sees ``2 x pairs x frames x 196`` patch tokens per GPU (32+32 pairs at 4 frames: 50,176); the
ViT batch is the number of 197-token images closest to that (255). MFU = 3 x the ViT-B/16 forward FLOPs
(matmuls only, 2 per multiply-accumulate, as ``egovlpv2.model.flops`` counts ours) / step time / peak.
"""
import argparse
import json
import statistics
import time
from pathlib import Path


import torch

from egovlpv2.train.compile import CompileClock
from egovlpv2.train.monitor import device_peak_flops, peak_memory_gib


def vit_forward_flops(tokens: int = 197, dim: int = 768, depth: int = 12, mlp: int = 3072, patch_dim: int = 768,
                      classes: int = 1000) -> int:
    """Matmul FLOPs of one image through a ViT: patch embedding, ``depth`` blocks, the classifier."""
    per_block = 2 * tokens * dim * (3 * dim + dim + 2 * mlp) + 2 * 2 * tokens * tokens * dim
    return 2 * (tokens - 1) * patch_dim * dim + depth * per_block + 2 * dim * classes


def vit_step(model, images, labels, optimizer, dtype):
    with torch.autocast(images.device.type, dtype=dtype, enabled=dtype != torch.float32):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def measure(args, device, compiled: bool) -> dict:
    import timm

    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model = timm.create_model(args.model, pretrained=False).to(device)
    model.set_grad_checkpointing(args.grad_checkpointing)
    if compiled:
        model.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    images = torch.randn(args.batch, 3, 224, 224, device=device)
    labels = torch.randint(0, 1000, (args.batch,), device=device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    clock = CompileClock()
    times = []
    for i in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        vit_step(model, images, labels, optimizer, dtype).item()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    clock.close()
    median = statistics.median(times)
    peak = device_peak_flops(device)
    flops = 3 * args.batch * vit_forward_flops()
    return {"mode": f"timm {args.model}" + (" compiled" if compiled else ""), "step_s": median,
            "images_per_s": args.batch / median, "peak_memory_gib": peak_memory_gib(device),
            "mfu": flops / median / peak if peak else None, "compile_s": clock.seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--cpu-smoke", action="store_true", help="2 images, 1 step, fp32 on the CPU")
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--pairs", type=int, default=32, help="our step's anchors (partners double them)")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--batch", type=int, help="images per step (default: our step's patch tokens / 197)")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--compile", choices=["off", "on", "both"], default="both")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.cpu_smoke:
        args.batch, args.steps, args.warmup, args.precision = 2, 1, 0, "fp32"
    device = torch.device("cuda" if args.gpu else "cpu")
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a visible CUDA device")
    tokens = 2 * args.pairs * args.frames * 196
    args.batch = args.batch or round(tokens / 197)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"timm {args.model}: {args.batch} images x 197 tokens (our step: {tokens} patch tokens), {args.precision}, "
          f"grad checkpointing {'on' if args.grad_checkpointing else 'off'}, {name}; forward "
          f"{vit_forward_flops() / 1e9:.2f} GFLOP/image")
    variants = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    rows = [measure(args, device, compiled) for compiled in variants]
    print("| model | step (s) | images/s | peak memory (GiB) | MFU | compile (s) |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"| {r['mode']} | {r['step_s']:.3f} | {r['images_per_s']:.1f} | {r['peak_memory_gib']:.2f} | {mfu} "
              f"| {r['compile_s']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
