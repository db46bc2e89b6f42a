"""The toy step loop with faults injected on request; writes this rank's result JSON like tests/train/toy_worker.py.

Usage: fault_worker.py DS_CONFIG OUTPUT_DIR TOTAL_STEPS [options]
  --save-fault {kill,enospc} --save-fault-step N   rank 1 writes half of its optimizer shard of step N, then
                                                  is SIGKILLed or gets OSError(ENOSPC) (a full disk)
  --nan-from-step N                               rank 1's loss is NaN from optimizer step N on
  --signal-at-call N --signal NAME                rank 1 sends itself NAME at objective call N (SIGKILL, SIGSTOP)
  --hang-at-call N                                rank 1 sleeps forever at call N (alive, heartbeating)
  --step-sleep S                                  sleep S seconds in every call (time for an outside signal)
  --gil-hold-at-call N --gil-hold-s S             rank 1 holds the GIL for S seconds in one C call at call N
  --slow-save-s S                                 rank 0's DeepSpeed save sleeps S seconds first
  --tensorboard-enospc                            every TensorBoard flush raises OSError(ENOSPC) (a full disk)
  --no-resume                                     checkpoint.auto_resume=false
  --allow-fresh-start-on-requeue                  LoopSettings.allow_fresh_start_on_requeue
  --peer-timeout S --stop-timeout S               LoopSettings values
It writes <output_dir>/started_rank<r> when the first step begins. A user error is one `error:` line and
exit status 2, as under the console scripts.
"""
import argparse
import ctypes
import errno
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1] / "train")]

import torch  # noqa: E402

from egovlpv2.cli import run_cli  # noqa: E402
from egovlpv2.dist.env import init_distributed  # noqa: E402
from egovlpv2.dist.signals import install_stop_handlers  # noqa: E402
from egovlpv2.train.config import OptimConfig  # noqa: E402
from egovlpv2.train.engine import build_engine, load_ds_config, precision_dtype, reconcile_ds_config  # noqa: E402
from egovlpv2.train.loop import LoopComponents, LoopSettings, run_loop  # noqa: E402
from toy import ToyModel, ToyObjective, ToySource  # noqa: E402

GRAD_ACCUM = 2


class FaultyObjective(ToyObjective):
    def __init__(self, model, args, rank, out):
        super().__init__(model)
        self.args, self.rank, self.out, self.calls = args, rank, out, 0

    def __call__(self, batch, step=None):
        self.calls += 1
        a = self.args
        if self.calls == 1:
            (self.out / f"started_rank{self.rank}").touch()
        if a.step_sleep:
            time.sleep(a.step_sleep)
        if self.rank == 1 and self.calls == a.signal_at_call:
            os.kill(os.getpid(), getattr(signal, a.signal))
        if self.rank == 1 and self.calls == a.hang_at_call:
            while True:
                time.sleep(1)
        if self.rank == 1 and self.calls == a.gil_hold_at_call:
            ctypes.PyDLL(None).sleep(int(a.gil_hold_s))  # a PyDLL call keeps the GIL for its whole length
        loss, parts = super().__call__(batch, step)
        if self.rank == 1 and a.nan_from_step is not None and step // GRAD_ACCUM + 1 >= a.nan_from_step:
            loss = loss * float("nan")
        return loss, parts


def inject_save_fault(engine, kind: str, tag: str) -> None:
    """Rank 1's optimizer shard of ``tag`` is torn: half written, then the process dies or the disk is full."""
    original = engine.checkpoint_engine.save

    def save(state_dict, path):
        if tag in str(path) and "optim_states" in str(path):
            original(state_dict, path)
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return original(state_dict, path)

    engine.checkpoint_engine.save = save


def slow_down_saves(engine, seconds: float) -> None:
    original = engine.save_checkpoint

    def save_checkpoint(*args, **kwargs):
        time.sleep(seconds)
        return original(*args, **kwargs)

    engine.save_checkpoint = save_checkpoint


def fill_tensorboard_disk() -> None:
    from torch.utils.tensorboard import SummaryWriter

    def flush(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "tensorboard")

    SummaryWriter.flush = flush


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("ds_config")
    parser.add_argument("output_dir")
    parser.add_argument("total_steps", type=int)
    parser.add_argument("--save-fault", choices=("kill", "enospc"))
    parser.add_argument("--save-fault-step", type=int)
    parser.add_argument("--nan-from-step", type=int)
    parser.add_argument("--signal-at-call", type=int, default=-1)
    parser.add_argument("--signal", default="SIGKILL")
    parser.add_argument("--hang-at-call", type=int, default=-1)
    parser.add_argument("--step-sleep", type=float, default=0.0)
    parser.add_argument("--peer-timeout", type=float, default=60.0)
    parser.add_argument("--stop-timeout", type=float, default=300.0)
    parser.add_argument("--checkpoint-every", type=int, default=3)
    parser.add_argument("--gil-hold-at-call", type=int, default=-1)
    parser.add_argument("--gil-hold-s", type=float, default=0.0)
    parser.add_argument("--slow-save-s", type=float, default=0.0)
    parser.add_argument("--tensorboard-enospc", action="store_true")
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--allow-fresh-start-on-requeue", action="store_true")
    args = parser.parse_args(argv)

    env = init_distributed(timeout_s=600)
    install_stop_handlers()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = ToyModel()
    ds = reconcile_ds_config(load_ds_config(args.ds_config), 4, GRAD_ACCUM, env.world_size)
    torch.manual_seed(1 + env.rank)
    engine = build_engine(model, FaultyObjective(model, args, env.rank, out), ds, OptimConfig(lr=1e-2),
                          args.total_steps)
    if args.save_fault and env.rank == 1:
        inject_save_fault(engine, args.save_fault, f"step{args.save_fault_step:08d}")
    if args.slow_save_s and env.rank == 0:
        slow_down_saves(engine, args.slow_save_s)
    if args.tensorboard_enospc:
        fill_tensorboard_disk()
    dtype = precision_dtype(ds)
    components = LoopComponents(objective=None, make_loader=lambda state: ToySource(state, env.rank),
                                prepare=lambda b, device: {k: v.to(device, dtype) for k, v in b.items()},
                                count_clips=lambda b: len(b["x"]))
    settings = LoopSettings(output_dir=str(out), total_steps=args.total_steps, grad_accum_steps=GRAD_ACCUM,
                            checkpoint_every=args.checkpoint_every, keep_last=3, log_every=1, progress_bar=False,
                            peer_timeout_s=args.peer_timeout, stop_timeout_s=args.stop_timeout,
                            auto_resume=not args.no_resume,
                            **({"allow_fresh_start_on_requeue": True} if args.allow_fresh_start_on_requeue else {}))
    result = run_loop(engine, components, settings, torch.device("cpu"))
    (out / f"result_rank{env.rank}_{os.getpid()}.json").write_text(json.dumps(
        {"step": result.step, "finished": result.finished, "stopped": result.stopped,
         "history": result.history, "scalars": result.last_scalars}))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
