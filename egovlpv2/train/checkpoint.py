"""Checkpoints that resume exactly, and preemption that stops every rank at the same step.

Layout of ``<output_dir>/checkpoints``::

    latest                    # tag of the newest complete checkpoint (written last, by DeepSpeed)
    step00001000/             # DeepSpeed's model/optimizer/scheduler files (ZeRO-2 or ZeRO-3 shards)
        trainer_state.json    # step, world size, samples seen: what the whole run agrees on
        rank_00000.pt         # per rank: RNG states (python, numpy, torch, CUDA) and the loader position

A tag is complete once ``latest`` names it: per-rank files are written before DeepSpeed's save, which
writes ``latest`` at its very end, so a crash mid-save leaves the previous checkpoint in charge.

Preemption: a signal handler (or the SLURM/submitit glue, through :func:`request_stop`) only sets a flag.
The loop calls :func:`stop_agreed` at each step boundary; it all-reduces the flag so every rank sees the
same answer at the same step, then all ranks save together (DeepSpeed saves are collective).
"""
from __future__ import annotations

import json
import logging
import shutil
import signal
import threading
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
import torch.distributed as dist

from egovlpv2.dist import collectives as C
from egovlpv2.rng import rng_state, set_rng_state

log = logging.getLogger(__name__)

_STOP = threading.Event()


def request_stop(signum: Optional[int] = None, frame: Any = None) -> None:
    """Ask the run to save and exit at the next step boundary. Safe inside a signal handler."""
    _STOP.set()


def stop_requested() -> bool:
    """This process's own flag (not yet agreed with the other ranks)."""
    return _STOP.is_set()


def install_stop_handlers(signals: Iterable[int] = (signal.SIGUSR1, signal.SIGTERM)) -> None:
    """Make each signal in ``signals`` request a stop (main thread only)."""
    for signum in signals:
        signal.signal(signum, request_stop)


def stop_agreed(device: torch.device) -> bool:
    """True on every rank when any rank requested a stop; a collective, call it on all ranks at once."""
    flag = torch.tensor([1.0 if _STOP.is_set() else 0.0], device=device)
    if C.world_size() > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


def tag_for_step(step: int) -> str:
    return f"step{step:08d}"


class CheckpointManager:
    """Save every rank's share of a DeepSpeed engine plus the trainer's own state; keep the newest K."""

    def __init__(self, directory: str | Path, engine, keep_last: int = 3):
        self.directory = Path(directory)
        self.engine = engine
        self.keep_last = keep_last
        self.rank, self.world_size = C.rank(), C.world_size()

    def latest_tag(self) -> Optional[str]:
        latest = self.directory / "latest"
        if not latest.is_file():
            return None
        tag = latest.read_text().strip()
        if not (self.directory / tag).is_dir():
            raise FileNotFoundError(f"{latest} names {tag!r}, but {self.directory / tag} does not exist")
        return tag

    def tags(self) -> list[str]:
        return sorted(p.name for p in self.directory.glob("step*") if p.is_dir())

    def save(self, step: int, trainer_state: dict, rank_state: dict) -> str:
        """Collective: every rank must call it at the same step."""
        tag = tag_for_step(step)
        tag_dir = self.directory / tag
        tag_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"rng": rng_state(), **rank_state}, tag_dir / f"rank_{self.rank:05d}.pt")
        if self.rank == 0:
            state = {"step": step, "world_size": self.world_size, **trainer_state}
            (tag_dir / "trainer_state.json").write_text(json.dumps(state, indent=1))
        if dist.is_initialized():
            dist.barrier()
        self.engine.save_checkpoint(str(self.directory), tag=tag)  # writes `latest` last, then barriers
        if self.rank == 0:
            self._prune(keep=tag)
        log.info("saved checkpoint %s", tag_dir)
        return tag

    def _prune(self, keep: str) -> None:
        old = [t for t in self.tags() if t != keep][: max(0, len(self.tags()) - self.keep_last)]
        for tag in old:
            shutil.rmtree(self.directory / tag, ignore_errors=True)

    def load_latest(self) -> Optional[tuple[dict, dict]]:
        """Restore engine + RNG from ``latest``; returns (trainer_state, rank_state) or None if no checkpoint."""
        tag = self.latest_tag()
        if tag is None:
            return None
        tag_dir = self.directory / tag
        trainer_state = json.loads((tag_dir / "trainer_state.json").read_text())
        if trainer_state["world_size"] != self.world_size:
            raise RuntimeError(
                f"{tag_dir} was written by {trainer_state['world_size']} ranks, this run has {self.world_size}: "
                "exact resume needs the same world size (export the weights and start a new run otherwise)"
            )
        path, _ = self.engine.load_checkpoint(str(self.directory), tag=tag)
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load the checkpoint in {tag_dir}")
        rank_state = torch.load(tag_dir / f"rank_{self.rank:05d}.pt", weights_only=False)
        set_rng_state(rank_state.pop("rng"))
        log.info("resumed from %s (step %d)", tag_dir, trainer_state["step"])
        return trainer_state, rank_state
