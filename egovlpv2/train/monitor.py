"""What the user sees during training: progress bar, TensorBoard scalars, a one-line summary, throughput/MFU.

Timing is split per rank into data wait (blocked on the loader) and compute; at each logging interval the
ranks' figures are gathered once, so rank 0 can report every rank's data-wait fraction and the worst one
(the slowest loader sets everyone's pace).

Logging output is best-effort: TensorBoard files or ``train.log`` on a full (or failing) disk give one
warning, then that output stops and training goes on. Checkpoints are what must not be lost, and their
writes still fail loudly.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist

from egovlpv2.dist import collectives as C

log = logging.getLogger(__name__)

# Dense bf16/fp16 tensor-core peak FLOP/s per device, by name fragment (for the MFU estimate).
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "V100": 125e12}


def device_peak_flops(device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:  # resident set high-water mark of this process, in KiB on Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    except ImportError:
        return float("nan")


def _gather(obj):
    if C.world_size() > 1:
        out = [None] * C.world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


class Monitor:
    """Accumulates per-step figures between logging intervals and publishes them on rank 0."""

    def __init__(
        self,
        output_dir: str | Path,
        device: torch.device,
        total_steps: int,
        start_step: int,
        every_steps: int,
        tensorboard: bool = True,
        progress_bar: bool = True,
        flops_per_step: Optional[float] = None,
    ):
        self.rank, self.world_size = C.rank(), C.world_size()
        self.device = device
        self.every_steps = every_steps
        self.flops_per_step = flops_per_step
        self.peak_flops = device_peak_flops(device)
        self.writer = None
        self.bar = None
        if self.rank == 0 and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"), purge_step=start_step + 1)
            self._tensorboard(lambda writer: writer.flush())  # a full disk shows here rather than mid-run
        if self.rank == 0 and progress_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="pretrain", unit="step", dynamic_ncols=True)
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.steps = 0
        self.clips = 0
        self.wait_s = 0.0
        self.interval_start = time.perf_counter()

    def record_step(self, parts: dict[str, float], clips: int, wait_s: float) -> None:
        for key, value in parts.items():
            self.sums[key] += float(value)
        self.steps += 1
        self.clips += clips
        self.wait_s += wait_s
        if self.bar is not None:
            self.bar.update(1)
            if "loss" in parts:
                self.bar.set_postfix(loss=f"{float(parts['loss']):.4f}", refresh=False)

    def publish(self, step: int, lr: float, skipped: dict[str, int], nonfinite_steps: int = 0) -> Optional[dict]:
        """Collective (all ranks); rank 0 writes scalars and the summary line and returns them.

        ``nonfinite_steps`` (steps of this run with a NaN/inf loss or a skipped update) is published as a
        count: TensorBoard drops the non-finite losses themselves, so without it a diverged run looks quiet."""
        elapsed = max(1e-9, time.perf_counter() - self.interval_start)
        mine = {
            "wait": self.wait_s / elapsed,
            "clips_per_s": self.clips / elapsed,
            "mem": peak_memory_gib(self.device),
            "skipped": dict(skipped),
        }
        ranks = _gather(mine)
        means = {k: v / max(1, self.steps) for k, v in self.sums.items()}
        steps = self.steps
        self._reset()
        if self.rank != 0:
            return None
        scalars = {f"train/{k}": v for k, v in means.items()}
        scalars["train/lr"] = lr
        scalars["train/nonfinite_steps"] = nonfinite_steps
        scalars["perf/clips_per_s"] = sum(r["clips_per_s"] for r in ranks)
        scalars["perf/step_time_s"] = elapsed / max(1, steps)
        for r, figures in enumerate(ranks):
            scalars[f"perf/data_wait_fraction/rank{r}"] = figures["wait"]
        scalars["perf/data_wait_fraction/worst"] = max(r["wait"] for r in ranks)
        scalars["perf/peak_memory_gib"] = max(r["mem"] for r in ranks)
        if self.flops_per_step and self.peak_flops:
            achieved = self.flops_per_step * self.world_size * steps / elapsed
            scalars["perf/mfu"] = achieved / (self.peak_flops * self.world_size)
        totals: dict[str, int] = defaultdict(int)
        for figures in ranks:
            for reason, count in figures["skipped"].items():
                totals[reason] += count
        for reason, count in totals.items():
            scalars[f"data/skipped/{reason}"] = count
        self.write_scalars(step, {k: v for k, v in scalars.items() if isinstance(v, (int, float)) and math.isfinite(v)})
        log.info(summary_line(step, scalars))
        return scalars

    def write_scalars(self, step: int, scalars: dict[str, float], prefix: str = "") -> None:
        def write(writer) -> None:
            for key, value in scalars.items():
                writer.add_scalar(f"{prefix}/{key}" if prefix else key, value, step)
            writer.flush()

        self._tensorboard(write)

    def _tensorboard(self, write: Callable) -> None:
        """``write(writer)``; an OSError (a full disk) stops TensorBoard output with one warning."""
        if self.writer is None:
            return
        try:
            write(self.writer)
        except OSError as exc:
            writer, self.writer = self.writer, None
            log.warning("TensorBoard output stops, training goes on: %s", exc)
            try:
                writer.close()
            except OSError:
                pass

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self._tensorboard(lambda writer: writer.close())
        self.writer = None


class BestEffortFileHandler(logging.FileHandler):
    """A log file that a full disk silences with one warning on stderr, instead of a traceback per record."""

    def handleError(self, record: logging.LogRecord) -> None:
        logging.getLogger().removeHandler(self)
        try:
            self.close()
        except OSError:
            pass
        log.warning("%s: log file output stops, training goes on (see stderr): %s", self.baseFilename,
                    sys.exc_info()[1])


def summary_line(step: int, scalars: dict[str, float]) -> str:
    losses = " ".join(
        f"{k.split('/', 1)[1]}={v:.4f}" for k, v in scalars.items() if k.startswith("train/")
        and k not in ("train/lr", "train/nonfinite_steps")
    )
    line = (
        f"step {step} | {losses} | lr={scalars['train/lr']:.3g} | "
        f"{scalars['perf/clips_per_s']:.1f} clips/s | {scalars['perf/step_time_s']:.3f} s/step | "
        f"data wait {100 * scalars['perf/data_wait_fraction/worst']:.0f}% (worst rank) | "
        f"mem {scalars['perf/peak_memory_gib']:.2f} GiB"
    )
    if "perf/mfu" in scalars:
        line += f" | MFU {100 * scalars['perf/mfu']:.1f}%"
    if scalars.get("train/nonfinite_steps"):
        line += f" | non-finite steps {int(scalars['train/nonfinite_steps'])}"
    skipped = sum(v for k, v in scalars.items() if k.startswith("data/skipped/"))
    if skipped:
        line += f" | skipped {int(skipped)}"
    return line
