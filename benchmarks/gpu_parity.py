"""Correctness of the accelerator path: the same model and batch on the GPU and on the CPU.

    python benchmarks/gpu_parity.py

- `egovlpv2-tiny` in fp32: `encode_video`, `encode_text`, `match_score`, the pre-training loss and every
  parameter gradient, CUDA against CPU (GPU attention kernels and reductions differ only by rounding).
- `egovlpv2-base` (4 frames) under bf16 autocast against fp32 on the GPU: embeddings and match scores.
Prints the largest differences and exits non-zero when one exceeds its tolerance.
"""
import sys

import torch

import egovlpv2
from egovlpv2.data.transforms import normalize_video
from egovlpv2.losses import LossConfig, PretrainObjective
from synthetic_batch import random_pretrain_batch, token_info


def batch_for(cfg, n: int) -> dict:
    """A random batch with one padded text, so the attention masks matter."""
    v = cfg.video
    batch = random_pretrain_batch(n, v.num_frames, v.img_size, cfg.text.vocab_size, 12)
    batch["attention_mask"][1, 8:] = 0
    batch["input_ids"][1, 8:] = 1
    return batch


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def run_tiny(device: torch.device) -> dict:
    torch.manual_seed(0)
    model = egovlpv2.create_model("egovlpv2-tiny").to(device).eval()  # eval: no dropout, so devices agree
    for name, p in model.named_parameters():  # open the gates so the fused path is exercised
        if "alpha" in name or "gate" in name:
            p.data.fill_(0.5)
    batch = {k: t.to(device) for k, t in batch_for(model.cfg, 8).items()}
    video = normalize_video(batch["video"])
    out = {"encode_video": model.encode_video(video),
           "encode_text": model.encode_text(batch["input_ids"], batch["attention_mask"]),
           "match_score": model.match_score(video, batch["input_ids"], batch["attention_mask"])}
    objective = PretrainObjective(model, LossConfig(vtm_negative_pool="local"), token_info(model.cfg.text.vocab_size))
    loss, _ = objective(batch, 0)
    loss.backward()
    out["loss"] = loss
    out["grads"] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return out


def main() -> int:
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device")
    cuda = torch.device("cuda")
    failures = []
    gpu, cpu = run_tiny(cuda), run_tiny(torch.device("cpu"))
    print("egovlpv2-tiny fp32, CUDA vs CPU (max |diff| / max |cpu|):")
    for key in gpu:
        err = max_rel(gpu[key], cpu[key])
        ok = err < 1e-3
        failures += [] if ok else [key]
        print(f"  {key:13s} {err:.2e} {'ok' if ok else 'FAIL'}")

    torch.manual_seed(0)
    model = egovlpv2.create_model("egovlpv2-base").to(cuda).eval()
    batch = {k: t.to(cuda) for k, t in batch_for(model.cfg, 4).items()}
    video, ids, mask = normalize_video(batch["video"]), batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        ref = (model.encode_video(video), model.encode_text(ids, mask), model.match_score(video, ids, mask))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = (model.encode_video(video), model.encode_text(ids, mask), model.match_score(video, ids, mask))
    print("egovlpv2-base, bf16 autocast vs fp32 on CUDA:")
    for name, a, b in zip(("encode_video", "encode_text", "match_score"), low, ref):
        err = max_rel(a, b)
        ok = err < 5e-2
        failures += [] if ok else [f"base {name}"]
        print(f"  {name:13s} {err:.2e} {'ok' if ok else 'FAIL'}")
    print("parity:", "FAIL " + ", ".join(failures) if failures else "all ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
