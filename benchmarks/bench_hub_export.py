"""Time and peak memory of converting a released-layout checkpoint to the Hub format.

    python benchmarks/bench_hub_export.py                         # egovlpv2-base, in a temporary directory
    python benchmarks/bench_hub_export.py --recipe egovlpv2-base-smallproj

Random weights of the recipe are written in the released file's layout (``module.`` names under
``state_dict``, a ``.pth``), then ``egovlpv2-export SOURCE --format hub --out DIR`` runs in a fresh process:
its wall time (Python start and imports included) and its peak resident memory are what a user sees.
"""
import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from egovlpv2.model import EgoVLPv2, resolve_model_config
from egovlpv2.train.export import write_weights


def released_file(recipe: str, path: Path) -> tuple[Path, int]:
    cfg = resolve_model_config(recipe)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in EgoVLPv2(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=g) * 0.02 for k, shape in shapes.items()}
    return write_weights(state, path, cfg, "random", layout="released"), sum(v.numel() for v in state.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="egovlpv2-base")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source, params = released_file(args.recipe, Path(tmp) / "EgoVLPv2.pth")
        out = Path(tmp) / "hub"
        # No --config: the recipe is detected from the file, as for a user's released checkpoint.
        cmd = [sys.executable, "-m", "egovlpv2.cli.export", str(source), "--format", "hub", "--out", str(out)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_gib = child.ru_maxrss / 2**20  # KiB on Linux
        sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
        print(f"recipe {args.recipe}: {params / 1e6:.1f}M parameters, source {source.stat().st_size / 2**30:.2f} GiB")
        print(f"egovlpv2-export --format hub: {wall:.1f} s wall ({child.ru_utime:.1f} s user CPU, "
              f"{child.ru_stime:.1f} s system CPU), peak RSS {peak_gib:.2f} GiB")
        print("written: " + ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in sizes.items()))


if __name__ == "__main__":
    main()
