"""Run the step loop on the toy task in a real (torchrun-launched) process; write this rank's history as JSON.

Usage: toy_worker.py DS_CONFIG OUTPUT_DIR TOTAL_STEPS [--stop-after N] [--signal-at-call N [--kill-with NAME]]
"""
import argparse
import json
import os
import signal
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402

from egovlpv2.dist.env import init_distributed  # noqa: E402
from egovlpv2.dist.signals import install_stop_handlers  # noqa: E402
from egovlpv2.train.config import OptimConfig  # noqa: E402
from egovlpv2.train.engine import build_engine, load_ds_config, precision_dtype, reconcile_ds_config  # noqa: E402
from egovlpv2.train.loop import LoopComponents, LoopSettings, run_loop  # noqa: E402
from toy import ToyModel, ToyObjective, ToySource  # noqa: E402


class SignallingObjective(ToyObjective):
    """At a given call, rank 1 sends itself a signal: SIGUSR1 as a preempted job receives it, or SIGKILL."""

    def __init__(self, model, signal_at_call, signum):
        super().__init__(model)
        self.calls, self.signal_at_call, self.signum = 0, signal_at_call, signum

    def __call__(self, batch, step=None):
        self.calls += 1
        if self.calls == self.signal_at_call and int(os.environ["RANK"]) == 1:
            os.kill(os.getpid(), self.signum)
        return super().__call__(batch, step)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("ds_config")
    parser.add_argument("output_dir")
    parser.add_argument("total_steps", type=int)
    parser.add_argument("--stop-after", type=int)
    parser.add_argument("--signal-at-call", type=int, default=-1)
    parser.add_argument("--kill-with", default="SIGUSR1")
    args = parser.parse_args()

    env = init_distributed()
    install_stop_handlers()
    torch.manual_seed(0)
    model = ToyModel()
    ds = reconcile_ds_config(load_ds_config(args.ds_config), 4, 2, env.world_size)
    torch.manual_seed(1 + env.rank)
    engine = build_engine(model, SignallingObjective(model, args.signal_at_call, getattr(signal, args.kill_with)), ds, OptimConfig(lr=1e-2), args.total_steps)
    dtype = precision_dtype(ds)
    components = LoopComponents(
        objective=None,
        make_loader=lambda state: ToySource(state, env.rank),
        prepare=lambda b, device: {k: v.to(device, dtype) for k, v in b.items()},
        count_clips=lambda b: len(b["x"]),
    )
    settings = LoopSettings(output_dir=args.output_dir, total_steps=args.total_steps, grad_accum_steps=2,
                            checkpoint_every=3, keep_last=2, log_every=2, stop_after_steps=args.stop_after,
                            progress_bar=False)
    result = run_loop(engine, components, settings, torch.device("cpu"))
    out = Path(args.output_dir) / f"result_rank{env.rank}_{os.getpid()}.json"
    out.write_text(json.dumps({"step": result.step, "finished": result.finished, "stopped": result.stopped,
                               "history": result.history, "scalars": result.last_scalars}))


if __name__ == "__main__":
    main()
