"""The GPU session's figures side by side, checked against the targets of the compiled training step.

    python benchmarks/gpu_summary.py OUT_DIR     # reads step_ckpt.json, step_no_ckpt.json, vit.json

Targets: our best MFU >= timm ViT-B/16's best on the same GPU; >= 35%; DeepSpeed's step <= 10% slower
than the plain step with the same compile setting. Prints one table and one line per target; a missing
file (a step that timed out) is reported, not fatal.
"""
import json
import sys
from pathlib import Path

TARGET_MFU = 0.35
MAX_DEEPSPEED_OVERHEAD = 0.10


def load_rows(path: Path, label: str) -> list[dict]:
    if not path.is_file():
        print(f"missing {path.name}: that step did not finish")
        return []
    return [dict(r, setting=label) for r in json.loads(path.read_text())["rows"]]


def fmt_mfu(r: dict) -> str:
    return "n/a" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"


def main(out: Path) -> int:
    ours = load_rows(out / "step_ckpt.json", "checkpointing") + load_rows(out / "step_no_ckpt.json", "no checkpointing")
    vit = load_rows(out / "vit.json", "timm")
    print("| run | setting | step (s) | clips or images/s | peak memory (GiB) | MFU | compile (s) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in ours + vit:
        rate = r.get("clips_per_s", r.get("images_per_s"))
        print(f"| {r['mode']} | {r['setting']} | {r['step_s']:.3f} | {rate:.1f} | {r['peak_memory_gib']:.2f} "
              f"| {fmt_mfu(r)} | {r.get('compile_s', 0):.1f} |")
    with_mfu = [r for r in ours if r.get("mfu") is not None]
    if not with_mfu:
        print("no MFU figures (not on a GPU with a known peak)")
        return 0
    best = max(with_mfu, key=lambda r: r["mfu"])
    print(f"our best MFU: {fmt_mfu(best)} ({best['mode']}, {best['setting']}); target {100 * TARGET_MFU:.0f}%: "
          f"{'met' if best['mfu'] >= TARGET_MFU else 'NOT met'}")
    vit_mfu = [r for r in vit if r.get("mfu") is not None]
    if vit_mfu:
        top = max(vit_mfu, key=lambda r: r["mfu"])
        print(f"timm best MFU: {fmt_mfu(top)} ({top['mode']}); ours >= timm's: "
              f"{'met' if best['mfu'] >= top['mfu'] else 'NOT met'}")
    for setting in ("checkpointing", "no checkpointing"):
        rows = {r["mode"]: r for r in ours if r["setting"] == setting}
        for suffix in ("", "+blocks"):
            ds, plain = rows.get(f"deepspeed{suffix}"), rows.get(f"plain{suffix}")
            if ds and plain:
                overhead = ds["step_s"] / plain["step_s"] - 1
                print(f"DeepSpeed overhead ({setting}{', compiled' if suffix else ''}): {100 * overhead:+.1f}%; "
                      f"target <= {100 * MAX_DEEPSPEED_OVERHEAD:.0f}%: "
                      f"{'met' if overhead <= MAX_DEEPSPEED_OVERHEAD else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
