"""Parameters and forward FLOPs per clip of EgoVLPv2 (fusion in the backbone) against stacked fusion layers.

    python benchmarks/model_cost.py                    # analytic figures, base config, 4 and 16 frames
    python benchmarks/model_cost.py --measure          # also time the forward passes on the local accelerator

FLOPs count matrix multiplications (see egovlpv2/model/flops.py); text length 15 tokens (pre-training).
The stacked alternative keeps the same towers and heads, but fuses with 6 extra co-attention layers per
modality (self-attention, cross-attention, FFN) on top of unfused towers, the design the paper argues against.
"""

import argparse
import time

import torch

from egovlpv2.model import EgoVLPv2, resolve_model_config
from egovlpv2.model.flops import (
    DEFAULT_TEXT_LEN,
    count_parameters,
    forward_flops,
    stacked_fusion_flops,
    stacked_fusion_layer_parameters,
)


def analytic_table(recipe: str, frame_counts: list[int], text_len: int) -> list[str]:
    cfg = resolve_model_config(recipe)
    with torch.device("meta"):
        counts = count_parameters(EgoVLPv2(cfg))
    stacked_params = 2 * cfg.fusion_layers * stacked_fusion_layer_parameters(cfg)
    stacked_total = counts["total"] - counts["fusion"] + stacked_params
    lines = [
        f"Config `{recipe}`, text length {text_len}; GFLOPs = forward FLOPs per clip / 1e9.",
        "",
        "| | EgoVLPv2 (fusion in backbone) | stacked fusion (6+6 layers) | stacked / ours |",
        "| --- | ---: | ---: | ---: |",
        f"| parameters, total | {counts['total'] / 1e6:.1f} M | {stacked_total / 1e6:.1f} M | {stacked_total / counts['total']:.2f}x |",
        f"| parameters, fusion | {counts['fusion'] / 1e6:.1f} M | {stacked_params / 1e6:.1f} M | {stacked_params / counts['fusion']:.2f}x |",
    ]
    for frames in frame_counts:
        dual = forward_flops(cfg, frames, "dual", text_len)
        fused = forward_flops(cfg, frames, "fusion", text_len)
        stacked_extra = stacked_fusion_flops(cfg, frames, text_len, cfg.fusion_layers)
        backbone = dual.video + dual.text
        stacked_fused = backbone + stacked_extra + fused.heads
        lines += [
            f"| {frames} frames: dual GFLOPs | {dual.total / 1e9:.1f} | {dual.total / 1e9:.1f} | 1.00x |",
            f"| {frames} frames: fusion-mode GFLOPs | {fused.total / 1e9:.1f} | {stacked_fused / 1e9:.1f} | {stacked_fused / fused.total:.2f}x |",
            f"| {frames} frames: GFLOPs added by fusion | {fused.fusion / 1e9:.1f} | {stacked_extra / 1e9:.1f} | {stacked_extra / fused.fusion:.2f}x |",
        ]
    lines += ["", f"Parameters by part (ours): {counts}"]
    return lines


def measure(recipe: str, frames: int, batch: int, text_len: int, steps: int) -> list[str]:
    """Time dual and fusion forward passes (bf16 autocast on CUDA) and report achieved TFLOP/s."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = resolve_model_config(recipe)
    from egovlpv2.model.config import apply_model_overrides

    cfg = apply_model_overrides(cfg, num_frames=frames)
    model = EgoVLPv2(cfg).to(device).eval()
    size = cfg.video.img_size
    video = torch.randn(batch, frames, 3, size, size, device=device)
    ids = torch.randint(3, cfg.text.vocab_size, (batch, text_len), device=device)
    mask = torch.ones_like(ids)
    runs = {
        "dual": lambda: (model.encode_video(video), model.encode_text(ids, mask)),
        "fusion": lambda: model.match_score(video, ids, mask),
    }
    lines = []
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    for mode, run in runs.items():
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            run(), run()  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = (time.perf_counter() - start) / steps
        flops = forward_flops(cfg, frames, mode, text_len).total * batch
        lines.append(
            f"| {mode} | {frames} | {batch} | {batch / seconds:.1f} | {flops / seconds / 1e12:.1f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="egovlpv2-base")
    parser.add_argument("--frames", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--text-len", type=int, default=DEFAULT_TEXT_LEN)
    parser.add_argument("--measure", action="store_true", help="also time forward passes on this machine")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print("\n".join(analytic_table(args.recipe, args.frames, args.text_len)))
    if args.measure:
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
        print(f"\nMeasured forward throughput on {name} (bf16 autocast on CUDA), torch {torch.__version__}:\n")
        print("| mode | frames | batch | clips/s | achieved TFLOP/s |\n| --- | ---: | ---: | ---: | ---: |")
        for frames in args.frames:
            print("\n".join(measure(args.recipe, frames, args.batch, args.text_len, args.steps)))


if __name__ == "__main__":
    main()
