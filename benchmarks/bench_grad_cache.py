"""Cost of gradient caching: step throughput and peak memory at a fixed contrastive batch, cached against
one plain micro-batch, and the largest contrastive batch each reaches.

    python benchmarks/bench_grad_cache.py                                   # CPU, egovlpv2-tiny
    python benchmarks/bench_grad_cache.py --model egovlpv2-base --device cuda --bf16 --checkpointing \\
        --contrastive-batch 128 --micro 128 64 32 --max-plain 1024 --cached-micro 64 --cached-steps 2 4 8

One process, the whole objective (EgoNCE + MLM + 2 VTM) and an AdamW step. A "plain" row runs the
contrastive batch as one micro-batch; a "cached" row splits it into micro-batches with
``egovlpv2.train.grad_cache.cached_step`` (same loss and gradients). Throughput is clips/s over
``--steps`` timed steps after one warm-up step. Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU;
on the CPU the peak resident set of a fresh process per row (so CPU rows include the interpreter).
"""
import sys

import argparse
import contextlib
import json
import resource
import subprocess
import time

import torch

from synthetic_batch import random_pretrain_batch, token_info


_MODELS: dict = {}


def run_row(args, contrastive: int, micro: int) -> dict:
    """Time ``args.steps`` steps of one contrastive batch split into micro-batches of ``micro``."""
    import egovlpv2
    from egovlpv2.losses import LossConfig, PretrainObjective
    from egovlpv2.train.grad_cache import cached_step

    device = torch.device(args.device)
    if args.model not in _MODELS:  # rows on a GPU share one model (building the base model takes a while)
        torch.manual_seed(0)
        _MODELS[args.model] = egovlpv2.create_model(args.model).to(device).train()
    model = _MODELS[args.model]
    model.set_grad_checkpointing(args.checkpointing)
    model.zero_grad(set_to_none=True)
    cfg = model.cfg
    objective = PretrainObjective(model, LossConfig(), token_info(cfg.text.vocab_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(k: int):
        batch = random_pretrain_batch(contrastive, cfg.video.num_frames, cfg.video.img_size, cfg.text.vocab_size,
                                      args.text_len, seed=k, device=device)
        with autocast:
            if micro == contrastive:
                loss, _ = objective(batch, step=k)
                loss.backward()
            else:
                chunks = [{key: t[i:i + micro] for key, t in batch.items()} for i in range(0, contrastive, micro)]
                cached_step(objective, chunks, k, lambda fn, b: fn(model, b), lambda loss: loss.backward())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step(0)
    sync()
    start = time.perf_counter()
    for k in range(1, args.steps + 1):
        step(k)
    sync()
    seconds = (time.perf_counter() - start) / args.steps
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"contrastive": contrastive, "micro": micro, "clips_per_s": contrastive / seconds,
            "step_s": seconds, "peak_gb": peak / 1e9}


def measure(args, contrastive: int, micro: int) -> dict:
    """One row; a fresh process on the CPU (peak RSS is per process), in-process on a GPU. Out of memory
    gives ``None`` figures."""
    if args.device != "cpu":
        try:
            return run_row(args, contrastive, micro)
        except torch.OutOfMemoryError:
            pass  # leave the except block first, so the failed step's tensors are released
        for model in _MODELS.values():
            model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        return {"contrastive": contrastive, "micro": micro, "clips_per_s": None, "step_s": None, "peak_gb": None}
    cmd = [sys.executable, __file__, "--row", str(contrastive), str(micro), *sys.argv[1:]]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt(row: dict, budget: float | None = None) -> str:
    mode = "plain" if row["micro"] == row["contrastive"] else f"cached {row['contrastive'] // row['micro']} x {row['micro']}"
    if row["clips_per_s"] is None:
        return f"| {row['contrastive']} | {mode} | out of memory | - | - |"
    return (f"| {row['contrastive']} | {mode} | {row['clips_per_s']:.1f} | {row['step_s']:.2f} | "
            f"{row['peak_gb']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="egovlpv2-tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--text-len", type=int, default=15)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--contrastive-batch", type=int, default=64)
    ap.add_argument("--micro", type=int, nargs="+", default=[64, 32, 16, 8])
    ap.add_argument("--max-plain", type=int, default=0, help="double the plain batch from --contrastive-batch up to this")
    ap.add_argument("--cached-micro", type=int, default=0, help="micro-batch for the cached growth rows")
    ap.add_argument("--cached-steps", type=int, nargs="*", default=[], help="micro-batches per step for those rows")
    ap.add_argument("--row", type=int, nargs=2, help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.row:
        print(json.dumps(run_row(args, *args.row)))
        return

    print(f"model {args.model}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
          + f", bf16 {args.bf16}, checkpointing {args.checkpointing}, torch {torch.__version__}")
    print("| contrastive batch | mode | clips/s | s/step | peak memory (GB) |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for micro in args.micro:
        print(fmt(measure(args, args.contrastive_batch, micro)), flush=True)
    n = args.contrastive_batch * 2
    while args.max_plain and n <= args.max_plain:
        row = measure(args, n, n)
        print(fmt(row), flush=True)
        if row["clips_per_s"] is None:
            break
        n *= 2
    for m in args.cached_steps:
        print(fmt(measure(args, m * args.cached_micro, args.cached_micro)), flush=True)


if __name__ == "__main__":
    main()
