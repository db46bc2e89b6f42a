"""Time pre-training steps: our DeepSpeed ZeRO-2 step, a plain PyTorch AMP step, and the original's
recomputing schedule, on the same model, batch and objective, in one run.

    python benchmarks/bench_step.py                 # CPU: egovlpv2-tiny, fp32, 16+16 pairs
    python benchmarks/bench_step.py --gpu           # GPU: egovlpv2-base, 4 frames, 32+32 pairs, bf16, checkpointing
    python benchmarks/bench_step.py --compile blocks --modes deepspeed,plain   # each mode eager and compiled

Modes:
- deepspeed: `deepspeed.initialize` with the shipped zero2 DeepSpeed config (client AdamW, fp32 gradient accumulation,
  clipping) around our PretrainObjective; the fused MLM/VTM passes reuse the dual pass's lower layers.
- plain: the same objective, torch AdamW, torch.autocast (bf16 on GPU), clip_grad_norm_; no DeepSpeed.
- recompute: like plain, but the fused MLM and VTM passes recompute the lower (unfused) layers from the
  input, as the original implementation does (the video tower runs three times per step).

With ``--compile blocks|full`` every mode is also timed with the model compiled that way (rows
``<mode>+<compile>``), in the same run; the compile time (Dynamo + Inductor, paid in the warm-up) is reported.

Reports median step time, clips/s (anchors + partners), peak memory and, on a GPU with a known peak,
MFU = analytic model FLOPs of the step (forward + backward, recomputation not counted) / time / peak.
Batches are random tensors already on the device: this measures the step, not the loader.
"""
import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import egovlpv2
from egovlpv2.dist.env import init_distributed, select_device
from egovlpv2.losses import LossConfig, PretrainObjective
from egovlpv2.losses.vtm import vtm_inputs
from egovlpv2.model.config import resolve_model_config
from egovlpv2.train.compile import CompileClock
from egovlpv2.train.config import OptimConfig
from egovlpv2.train.engine import build_engine, load_ds_config, reconcile_ds_config
from egovlpv2.train.monitor import device_peak_flops, peak_memory_gib
from egovlpv2.train.optim import build_optimizer
from egovlpv2.train.pretrain import pretrain_step_flops
from synthetic_batch import random_pretrain_batch, token_info


class RecomputingObjective(PretrainObjective):
    """The original schedule: MLM and VTM each run the unfused lower layers again from the input.

    Mirrors ``PretrainObjective.__call__``, except that the fused passes get freshly computed lower states.
    """

    def __call__(self, batch, step=None):
        step = self.step if step is None else step
        self.step = step + 1
        ids, mask, video = batch["input_ids"], batch["attention_mask"], batch["video"]
        enc = self.encode(video, ids, mask)
        ego = self.contrastive(enc.video_embed, enc.text_embed, batch["verb"], batch["noun"])
        mlm_video = self.model.video_lower(self.prepare_video(video))  # recomputed for MLM
        vtm_video, vtm_text = self.model.video_lower(self.prepare_video(video)), self.model.text_lower(ids, mask)
        plan = self.plan(ego, step)
        states = vtm_inputs(vtm_video, vtm_text, plan, ego.sizes, self.cfg.vtm_negative_pool)
        mlm, vtm = self.fusion(mlm_video, ids, mask, ego.offset, step, states, plan.labels, sum(ego.sizes))
        return self.combine(ego, mlm, vtm)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def checkpointing_label(args) -> str:
    if not args.grad_checkpointing:
        return "off"
    return "on" if args.checkpoint_blocks is None else f"on for the lowest {args.checkpoint_blocks} blocks per tower"


def make_model(args, device, compile="off", dtype=None):
    torch.manual_seed(0)
    model = egovlpv2.create_model(args.model, compile=compile, num_frames=args.frames)
    model.set_grad_checkpointing(args.grad_checkpointing, args.checkpoint_blocks)
    return model.to(device, dtype) if dtype else model.to(device)


def deepspeed_step_fn(args, cfg, device, compile):
    ds = reconcile_ds_config(load_ds_config("zero2"), args.pairs, 1, 1, args.precision)
    model = make_model(args, device, compile)
    objective = PretrainObjective(model, LossConfig(), token_info(cfg.text.vocab_size))
    engine = build_engine(model, objective, ds, OptimConfig(), total_steps=10**6)

    def step(batch, i):
        loss, _ = engine(batch, step=i)
        engine.backward(loss)
        engine.step()
        return loss
    return step, engine


def plain_step_fn(args, cfg, device, objective_cls, compile):
    model = make_model(args, device, compile)
    objective = objective_cls(model, LossConfig(), token_info(cfg.text.vocab_size))
    optimizer = build_optimizer(model, OptimConfig())
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")

    def step(batch, i):
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss, _ = objective(batch, i)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss
    return step, model


def profile_steps(name, step, batch, first, device, top: int) -> None:
    """Two more steps under torch.profiler; print the operators that took the most device (or CPU) time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for i in range(first, first + 2):
            step(batch, i).item()
            sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\n[{name}] top {top} operators by {key} over 2 steps")
    print(prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=60))


def measure(name, build, args, cfg, device, flops):
    reset_memory(device)
    clock = CompileClock()
    step, owner = build()
    batch = random_pretrain_batch(2 * args.pairs, cfg.video.num_frames, cfg.video.img_size, cfg.text.vocab_size,
                                  args.text_len, device=device)
    times = []
    for i in range(args.warmup + args.steps):
        sync(device)
        start = time.perf_counter()
        loss = step(batch, i)
        loss.item()
        sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    if args.profile:
        profile_steps(name, step, batch, args.warmup + args.steps, device, args.profile)
    clock.close()
    median = statistics.median(times)
    peak = device_peak_flops(device)
    row = {"mode": name, "step_s": median, "clips_per_s": 2 * args.pairs / median,
           "peak_memory_gib": peak_memory_gib(device), "mfu": flops / median / peak if peak else None,
           "compile_s": clock.seconds, "compiles": clock.compiles}
    del step, owner
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="the base config: egovlpv2-base, 4 frames, 32+32, bf16")
    parser.add_argument("--model", help="model recipe (default: egovlpv2-tiny, or egovlpv2-base with --gpu)")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--pairs", type=int, help="anchors per step (partners double them); default 16, 32 with --gpu")
    parser.add_argument("--text-len", type=int, default=15)
    parser.add_argument("--precision", choices=["bf16", "fp16", "fp32"], help="default bf16 on GPU, fp32 on CPU")
    parser.add_argument("--no-grad-checkpointing", dest="grad_checkpointing", action="store_false")
    parser.add_argument("--checkpoint-blocks", type=int, metavar="N",
                        help="checkpoint only the lowest N blocks of each tower (default: all)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--modes", default="deepspeed,plain,recompute")
    parser.add_argument("--compile", choices=["off", "blocks", "full"], default="off",
                        help="also time every mode with the model compiled this way")
    parser.add_argument("--compile-only", action="store_true", help="with --compile: skip the eager rows")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after timing, profile 2 more steps per mode and print the top N operators")
    args = parser.parse_args()
    args.model = args.model or ("egovlpv2-base" if args.gpu else "egovlpv2-tiny")
    args.pairs = args.pairs or (32 if args.gpu else 16)

    env = init_distributed()  # DeepSpeed needs a process group, even of one
    device = select_device(env)
    if args.gpu and device.type != "cuda":
        raise SystemExit("--gpu needs a visible CUDA device")
    args.precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    cfg = resolve_model_config(args.model)
    cfg.video.num_frames = args.frames
    flops = pretrain_step_flops(cfg, 2 * args.pairs, args.text_len)
    builders = {
        "deepspeed": lambda c: deepspeed_step_fn(args, cfg, device, c),
        "plain": lambda c: plain_step_fn(args, cfg, device, PretrainObjective, c),
        "recompute": lambda c: plain_step_fn(args, cfg, device, RecomputingObjective, c),
    }
    variants = ([] if args.compile_only and args.compile != "off" else ["off"]) + (
        [args.compile] if args.compile != "off" else [])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.model}, {args.frames} frames, {args.pairs}+{args.pairs} pairs, {args.precision}, "
          f"grad checkpointing {checkpointing_label(args)}, {name}, torch {torch.__version__}; "
          f"model FLOPs/step {flops / 1e12:.3f} TFLOP; median of {args.steps} steps after {args.warmup}")
    rows, out_of_memory = [], []
    for mode in args.modes.split(","):
        for variant in variants:
            name = mode if variant == "off" else f"{mode}+{variant}"
            try:
                rows.append(measure(name, lambda: builders[mode](variant), args, cfg, device, flops))
            except torch.OutOfMemoryError:
                out_of_memory.append(name)
                reset_memory(device)
    print("| mode | step (s) | clips/s | peak memory (GiB) | MFU | compile (s) |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: |")
    for mode in out_of_memory:
        print(f"| {mode} | out of memory | | | | |")
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"| {r['mode']} | {r['step_s']:.3f} | {r['clips_per_s']:.1f} | {r['peak_memory_gib']:.2f} | {mfu} "
              f"| {r['compile_s']:.1f} |")
    by = {r["mode"]: r for r in rows}
    for suffix in ["", f"+{args.compile}"] if args.compile != "off" else [""]:
        ds, plain = by.get(f"deepspeed{suffix}"), by.get(f"plain{suffix}")
        if ds and plain:
            print(f"DeepSpeed{suffix} overhead over plain{suffix}: {100 * (ds['step_s'] / plain['step_s'] - 1):+.1f}%")
    for mode in args.modes.split(","):
        if args.compile != "off" and mode in by and f"{mode}+{args.compile}" in by:
            print(f"{mode}: compiled ({args.compile}) / eager clips/s: "
                  f"{by[f'{mode}+{args.compile}']['clips_per_s'] / by[mode]['clips_per_s']:.2f}x")
    if "recompute" in by:
        for mode in ("deepspeed", "plain"):
            if mode in by:
                print(f"{mode} / recompute clips/s: {by[mode]['clips_per_s'] / by['recompute']['clips_per_s']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
