"""Memory traffic of the non-GEMM work in one video block: bytes written per forward + backward.

On an H100 the divided-attention blocks are limited by memory traffic, not FLOPs: regrouping tokens by
time and by space, concatenations, casts and the gradients of slices all write whole token tensors. This
counts, with a dispatch-level tracer, the bytes every ATen op writes during one forward and backward of a
`SpaceTimeBlock`, and splits them into GEMM/attention kernels (the work itself) and everything else
("glue"). Views are free; allocations are not counted, writes into them are. Figures are in units of one
token tensor (batch x tokens x width x element size), so they do not depend on the machine or the batch.

    python benchmarks/glue_traffic.py                      # base width, 4 frames, bf16
    python benchmarks/glue_traffic.py --frames 16 --top 20
"""
import argparse
import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from egovlpv2.model.config import resolve_model_config
from egovlpv2.model.video import SpaceTimeBlock

ALLOCATIONS = {"empty", "empty_like", "new_empty", "new_empty_strided", "empty_strided"}
WORK = {"mm", "addmm", "bmm", "baddbmm"}  # plus every scaled-dot-product-attention kernel


class WrittenBytes(TorchDispatchMode):
    """Bytes written per op: outputs that are not views of an input, and in-place results."""

    def __init__(self):
        super().__init__()
        self.bytes = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func._overloadpacket.__name__
        if name in ALLOCATIONS:
            return out
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if torch.is_tensor(t)}
        in_place = func._schema.name.endswith("_")
        for t in tree_leaves(out):
            if torch.is_tensor(t) and (in_place or t.untyped_storage().data_ptr() not in inputs):
                self.bytes[name] += t.numel() * t.element_size()
        return out


def is_work(name: str) -> bool:
    return name in WORK or "scaled_dot_product" in name


def measure(block: SpaceTimeBlock, tokens: int, num_cls: int, frames: int,
            dtype: torch.dtype) -> tuple[collections.Counter, int]:
    """Bytes written per op in one forward + backward of ``block`` on one clip of ``num_cls`` CLS and
    ``tokens`` patch tokens, and the bytes of that clip's token tensor."""
    block.zero_grad(set_to_none=True)  # accumulating into earlier gradients would count as traffic
    x = torch.randn(1, num_cls + tokens, block.norm1.normalized_shape[0], dtype=dtype, requires_grad=True)
    with WrittenBytes() as counter:
        y = block(x, frames, num_cls)
        y.backward(torch.ones_like(y))
    return counter.bytes, x.numel() * x.element_size()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="egovlpv2-base")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--top", type=int, default=8, help="list the ops writing most glue bytes")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = resolve_model_config(args.model)
    cfg.video.num_frames = args.frames
    dtype = getattr(torch, args.dtype)
    block = SpaceTimeBlock(cfg.video, fused=False).to(dtype)
    tokens = args.frames * (cfg.video.img_size // cfg.video.patch_size) ** 2
    print(f"{args.model} video block, {args.frames} frames, {args.dtype}, torch {torch.__version__}: bytes written "
          "in one forward + backward, in token tensors")
    print("| CLS tokens | glue | GEMM + attention | largest glue ops |\n| ---: | ---: | ---: | --- |")
    for num_cls, layout in ((1, "1 (dual or fused path)"), (2, "2 (training: fused CLS carried)")):
        written, unit = measure(block, tokens, num_cls, args.frames, dtype)
        glue = {k: v / unit for k, v in written.items() if not is_work(k)}
        work = sum(v for k, v in written.items() if is_work(k)) / unit
        top = ", ".join(f"{k} {v:.1f}" for k, v in sorted(glue.items(), key=lambda kv: -kv[1])[: args.top])
        print(f"| {layout} | {sum(glue.values()):.1f} | {work:.1f} | {top} |")


if __name__ == "__main__":
    main()
