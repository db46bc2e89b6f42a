"""The quickstart: synthetic data -> shards -> DeepSpeed pre-training of the tiny model -> EgoMCQ.

    egovlpv2-demo            # about 10 minutes on 2 CPU cores; re-running reuses finished stages
    egovlpv2-demo --fresh    # start the training over (keeps the generated data)

Trains with `deepspeed --module egovlpv2.cli.pretrain --deepspeed zero2 --config demo` on 2 CPU ranks,
or on the visible GPUs. Everything lands in runs/demo/ under the current directory: data/, train/
(checkpoints, TensorBoard, train.log, eval_egomcq.json) and egovlpv2-tiny-demo.safetensors.
(``python -m egovlpv2.cli.demo`` and ``egovlpv2-demo`` are the same command.)
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from egovlpv2.cli import run_cli

CHANCE = 20.0  # five choices


def run(cmd: list[str], env: dict | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, env=env, check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="delete runs/demo/train first")
    parser.add_argument("--ranks", type=int, help="processes (default: the GPU count, or 2 on a CPU)")
    parser.add_argument("overrides", nargs="*", help="recipe overrides passed to egovlpv2-pretrain")
    args = parser.parse_args(argv)

    import torch

    from egovlpv2.dist.env import free_port
    from egovlpv2.storage import exists, join
    from egovlpv2.train.config import load_pretrain_config

    cfg = load_pretrain_config("demo", args.overrides)
    data = Path("runs") / "demo" / "data"
    src, out = data / "src", Path(cfg.train.output_dir)
    start = time.time()
    py = sys.executable
    if not (src / "egomcq.json").is_file():
        run([py, "-m", "egovlpv2.cli.make_synthetic", "--out", str(src), "--no-progress"])
    for task, flag, path, shards in (("egoclip", "--csv", src / "egoclip.csv", cfg.data.shards),
                                     ("egomcq", "--json", src / "egomcq.json", cfg.eval.egomcq_shards)):
        if not exists(join(str(shards), "manifest.json")):
            run([py, "-m", "egovlpv2.cli.make_shards", "--task", task, flag, str(path), "--videos", str(src / "videos"),
                 "--out", str(shards), "--workers", "2", "--samples-per-shard", "64", "--no-progress"])
    print(f"data ready in {time.time() - start:.0f} s", flush=True)

    if args.fresh and out.exists():
        shutil.rmtree(out)
    gpus = torch.cuda.device_count()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if gpus == 0:
        env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    ranks = args.ranks or gpus or 2
    launcher = ["deepspeed", "--num_gpus", str(ranks), "--master_port", str(free_port())]
    if shutil.which("deepspeed") is None:
        launcher = [py, "-m", "deepspeed.launcher.runner", *launcher[1:]]
    train_start = time.time()
    run([*launcher, "--module", "egovlpv2.cli.pretrain", "--deepspeed", "zero2", "--config", "demo",
         *args.overrides], env=env)
    print(f"trained in {time.time() - train_start:.0f} s", flush=True)
    run([py, "-m", "egovlpv2.cli.export", str(out), "--out", str(out.parent / "egovlpv2-tiny-demo.safetensors")], env=env)

    evals = json.loads((out / "eval_egomcq.json").read_text())
    step = max(evals, key=int)
    result = evals[step]
    print(f"\nEgoMCQ after {step} steps (synthetic held-out videos; chance = {CHANCE:.0f}%)")
    print(f"{'score':<10}{'inter-video':>14}{'intra-video':>14}")
    for kind in ("dual", "vtm", "ensemble"):
        print(f"{kind:<10}{result[f'{kind}_inter']:>13.1f}%{result[f'{kind}_intra']:>13.1f}%")
    print(f"total time {time.time() - start:.0f} s; TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
    best = max(result["ensemble_inter"], result["dual_inter"]), max(result["ensemble_intra"], result["dual_intra"])
    if min(best) <= CHANCE + 10:
        print("EgoMCQ accuracy is not clearly above chance: the demo did not learn", file=sys.stderr)
        return 1
    return 0


def cli() -> int:
    """The console script: a user error is one line on stderr and exit status 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
