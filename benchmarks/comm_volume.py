"""Bytes each rank sends and receives per pre-training step for the losses: our design against the original.

    python benchmarks/comm_volume.py                      # measure at 2 and 4 ranks, then the table to 256
    python benchmarks/comm_volume.py --measure-ranks      # analytic table only (no measured runs)

Measured: the real PretrainObjective and model run a forward and backward on 2 and 4 local gloo ranks
(per-rank batch 32 anchors + 32 partners, 4 frames of 224 px, text length 15, 4096-d embeddings, 118 + 582
tags) and every collective payload is recorded (``egovlpv2.dist.collectives.record_traffic``). The model is
narrowed to 64 channels and 2 layers so that a CPU can run it; nothing else about the payloads changes, and
the analytic model below, fed the same widths, reproduces the measured bytes.
Analytic: the same model evaluated at the base width (768 channels) for 1..256 ranks, with the expected
number of VTM negatives that live on another rank.

Wire bytes follow the ring/pairwise algorithms NCCL and gloo use: an all-gather of s bytes per rank sends
and receives (W-1)s; a reduce-scatter likewise; an all-to-all exactly the rows that change rank; an
all-reduce of S bytes 2(W-1)/W S. Gradient all-reduces of the parameters are identical in both designs and
left out. The original design is the released one: it all-gathers the raw 2B x 4 x 3 x 224 x 224 videos
(and the text ids) for VTM hard negatives and the B x L x V MLM logits, besides the embeddings.
"""

import argparse
from dataclasses import dataclass

import torch

F32 = 4
I64 = 8


@dataclass
class Shape:
    pairs: int = 64            # per rank: 32 anchors + 32 partners
    frames: int = 4
    img: int = 224
    patch: int = 16
    width: int = 768           # hidden width of the lower-layer states
    text_len: int = 15
    embed: int = 4096          # projection output (mlp4096)
    tags: int = 118 + 582
    vocab: int = 50265
    video_cls: int = 2         # the lower states carry the dual and the fused CLS

    @property
    def video_row(self) -> int:
        return (self.video_cls + self.frames * (self.img // self.patch) ** 2) * self.width * F32

    @property
    def text_row(self) -> int:
        return self.text_len * (self.width * F32 + I64)  # hidden states + attention mask


def wire(op: str, contributed: int, received: int, world: int) -> tuple[float, float]:
    """(sent, received) on the wire for one recorded call (see the module docstring)."""
    if op == "all_gather":
        return (world - 1) * contributed, received - contributed
    if op == "reduce_scatter":
        return contributed - received, contributed - received
    if op == "all_to_all":
        return contributed, received
    if op == "all_reduce":
        return 2 * (world - 1) / world * contributed, 2 * (world - 1) / world * contributed
    raise ValueError(op)


def ours(shape: Shape, world: int, remote_videos: float, remote_texts: float) -> dict[str, float]:
    """Bytes one rank sends (= receives, by symmetry) per step, by purpose. ``remote_*``: VTM negatives of
    this rank's slots that live on another rank (each also sends its gradient back)."""
    w1 = world - 1
    n = shape.pairs
    text_grad_row = shape.text_len * shape.width * F32
    return {
        "batch sizes": w1 * I64,
        "embeddings (gather + grad reduce-scatter)": 2 * 2 * w1 * n * shape.embed * F32,
        "tags": w1 * n * shape.tags,
        "VTM plans": w1 * n * 2 * I64,
        "VTM negative states (+ grads)": remote_videos * 2 * shape.video_row
        + remote_texts * (shape.text_row + text_grad_row),
        "MLM counts": 2 * w1 / world * 2 * F32 if world > 1 else 0,
    }


def original(shape: Shape, world: int) -> dict[str, float]:
    w1 = world - 1
    n = shape.pairs
    return {
        "embeddings (gather + grad reduce-scatter)": 2 * 2 * w1 * n * shape.embed * F32,
        "raw videos": w1 * n * shape.frames * 3 * shape.img ** 2 * F32,
        "text ids + masks": w1 * n * shape.text_len * 2 * I64,
        "MLM logits": w1 * n * shape.text_len * shape.vocab * F32,
    }


def expected_remote(shape: Shape, world: int) -> float:
    """Half the slots are negatives, half of those replace the video (the other half the text); a draw
    from the global pool lives on another rank with probability (W-1)/W when similarities carry no rank
    structure (scene-aware partners, which are hard negatives on the same rank, make it smaller)."""
    return shape.pairs / 4 * (world - 1) / world


# ------------------------------------------------------------------------------------------ measurement
def _measure_rank(shape: Shape) -> list[tuple[str, int, int]]:
    import egovlpv2
    from egovlpv2.dist import collectives as C
    from egovlpv2.losses import LossConfig, PretrainObjective
    from synthetic_batch import random_pretrain_batch, token_info

    torch.manual_seed(0)
    model = egovlpv2.create_model({
        "name": "comm-volume",
        "video": {"img_size": shape.img, "patch_size": shape.patch, "dim": shape.width, "depth": 2, "heads": 4,
                  "num_frames": shape.frames},
        "text": {"vocab_size": 512, "hidden": shape.width, "layers": 2, "heads": 4, "intermediate": 128,
                 "max_positions": 32},
        "fusion_layers": 1, "projection": "mlp4096"})
    model.set_grad_checkpointing(True)
    batch = random_pretrain_batch(shape.pairs, shape.frames, shape.img, 512, shape.text_len, seed=C.rank())
    objective = PretrainObjective(model, LossConfig(), token_info(512))
    with C.record_traffic() as log:
        loss, _ = objective(batch, step=0)
        loss.backward()
    return [(c.op, c.contributed, c.received) for c in log]


def measure(world: int, shape: Shape) -> list[dict]:
    """Per rank: wire bytes of the fixed-size collectives, of the VTM row exchange, and the VTM rows this
    rank fetched (from the first two all-to-alls: video tokens, then text hidden states)."""
    from egovlpv2.dist.local_group import run_on_ranks

    out = []
    for log in run_on_ranks(_measure_rank, world, args=(shape,), timeout=1800):
        exchange = [(c, r) for op, c, r in log if op == "all_to_all"]
        fixed = [wire(op, c, r, world) for op, c, r in log if op != "all_to_all"]
        out.append({
            "calls": len(log),
            "fixed_sent": sum(s for s, _ in fixed), "fixed_received": sum(r for _, r in fixed),
            "exchange_sent": sum(c for c, _ in exchange), "exchange_received": sum(r for _, r in exchange),
            "videos_fetched": exchange[0][1] / shape.video_row,
            "texts_fetched": exchange[1][1] / (shape.text_len * shape.width * F32),
        })
    return out


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000:
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure-ranks", type=int, nargs="*", default=[2, 4])
    ap.add_argument("--max-world", type=int, default=256)
    args = ap.parse_args()

    narrow = Shape(width=64)
    if args.measure_ranks:
        print(f"Measured (real gloo runs, model narrowed to width {narrow.width}), per rank, forward + backward:")
        print("| ranks | rank | collectives | fixed-size part sent / received | analytic fixed part | "
              "VTM rows fetched (video, text) | analytic expectation | VTM exchange sent / received |")
        print("| ---: | ---: | ---: | --- | --- | --- | --- | --- |")
        for world in args.measure_ranks:
            fixed = ours(narrow, world, 0, 0)
            for rank, m in enumerate(measure(world, narrow)):
                print(f"| {world} | {rank} | {m['calls']} | {m['fixed_sent']:,.0f} B / {m['fixed_received']:,.0f} B | "
                      f"{sum(fixed.values()):,.0f} B | {m['videos_fetched']:.0f}, {m['texts_fetched']:.0f} | "
                      f"{expected_remote(narrow, world):.0f}, {expected_remote(narrow, world):.0f} | "
                      f"{human(m['exchange_sent'])} / {human(m['exchange_received'])} |")
        print()

    base = Shape()
    print(f"Analytic, base width {base.width}, per rank per step ({base.pairs} pairs, {base.frames} frames, "
          f"embeddings {base.embed}-d, fp32), bytes sent (= received):")
    print("| ranks | ours | of which VTM negative states | original | original / ours |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    world = 1
    while world <= args.max_world:
        rows = expected_remote(base, world)
        o = ours(base, world, rows, rows)
        r = original(base, world)
        ratio = f"{sum(r.values()) / sum(o.values()):.1f}x" if world > 1 else "-"
        print(f"| {world} | {human(sum(o.values()))} | {human(o['VTM negative states (+ grads)'])} | "
              f"{human(sum(r.values()))} | {ratio} |")
        world *= 2
    print()
    print("Parts at 256 ranks, ours:", {k: human(v) for k, v in ours(base, 256, *(2 * [expected_remote(base, 256)])).items()})
    print("Parts at 256 ranks, original:", {k: human(v) for k, v in original(base, 256).items()})


if __name__ == "__main__":
    main()
