"""The step loop over the real pre-training data source on the toy model, resumable with changed data options.

Usage: resume_worker.py OUTPUT_DIR TOTAL_STEPS [--stop-after N] [key=value ...]  (keys of DataConfig)

Each rank writes ``OUTPUT_DIR/used_rank<r>_<pid>.json``: the epoch and anchor ids of every batch it trained
on. A user error exits 2 with one ``error:`` line, as the command-line entry points do.
"""
import argparse
import json
import os
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1] / "train")]

import torch  # noqa: E402

from egovlpv2.cli import run_cli  # noqa: E402
from egovlpv2.config import apply_overrides  # noqa: E402
from egovlpv2.data.config import DataConfig  # noqa: E402
from egovlpv2.data.pipeline import pretrain_manifest  # noqa: E402
from egovlpv2.data.position import position_inputs  # noqa: E402
from egovlpv2.dist.env import init_distributed  # noqa: E402
from egovlpv2.train.config import OptimConfig  # noqa: E402
from egovlpv2.train.engine import build_engine, load_ds_config, reconcile_ds_config  # noqa: E402
from egovlpv2.train.loop import LoopComponents, LoopSettings, run_loop  # noqa: E402
from egovlpv2.train.pretrain import EpochSource  # noqa: E402
from toy import ToyModel, ToyObjective  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("total_steps", type=int)
    parser.add_argument("--stop-after", type=int)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args(argv)
    cfg = apply_overrides(DataConfig(num_frames=4, img_size=32, num_workers=0, shuffle_buffer=8), args.overrides)

    env = init_distributed()
    torch.manual_seed(0)
    model = ToyModel()
    ds = reconcile_ds_config(load_ds_config("zero2"), cfg.batch_size, 1, env.world_size, "fp32")
    engine = build_engine(model, ToyObjective(model), ds, OptimConfig(lr=1e-2), args.total_steps)
    manifest = pretrain_manifest(cfg)
    inputs = position_inputs(cfg, manifest.shard_counts())
    used = []

    class RecordingSource(EpochSource):
        def __iter__(self):
            for batch in super().__iter__():
                used.append([self.epoch, batch["sample_id"][:cfg.batch_size]])
                yield batch

    def prepare(batch, device):
        x = batch["video"].flatten(1)[:, :16].float() / 255
        return {"x": x.to(device), "y": x[:, :4].sum(-1).to(device)}

    components = LoopComponents(
        objective=None, make_loader=lambda state: RecordingSource(cfg, manifest, env.rank, env.world_size, state, inputs),
        prepare=prepare, count_clips=lambda b: len(b["x"]), data_inputs=inputs)
    settings = LoopSettings(output_dir=args.output_dir, total_steps=args.total_steps, checkpoint_every=1000,
                            stop_after_steps=args.stop_after, tensorboard=False, progress_bar=False)
    result = run_loop(engine, components, settings, torch.device("cpu"))
    (Path(args.output_dir) / f"used_rank{env.rank}_{os.getpid()}.json").write_text(
        json.dumps({"step": result.step, "batches": used}))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
