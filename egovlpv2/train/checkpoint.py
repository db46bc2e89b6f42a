"""Checkpoints that resume exactly, and preemption that stops every rank at the same step.

Layout of ``<output_dir>/checkpoints``::

    latest                    # tag of the newest complete checkpoint (moved last, atomically)
    step00001000/             # DeepSpeed's model/optimizer/scheduler files (ZeRO-2 or ZeRO-3 shards)
        trainer_state.json    # step, world size, samples seen: what the whole run agrees on
        rank_00000.pt         # per rank: RNG states (python, numpy, torch, CUDA) and the loader position
        full_state/           # the same model and optimizer state for any world size or ZeRO stage (elastic_state.py)
        complete.json         # every file's size, written once all ranks synced theirs
        .writer               # the ownership token of the job that wrote it (egovlpv2.train.run_owner)
    replaced/step00000006.<token>/   # a step directory of an earlier job that this job had to write again

A crash or a full disk mid-save leaves the previous checkpoint in charge, and a resume skips any tag whose
files do not match its completeness record (see :mod:`egovlpv2.train.checkpoint_commit`). A job never
deletes a step directory that another job wrote, except to prune complete checkpoints beyond
``keep_last``: a torn one in the way of a save is moved under ``replaced/``.

Preemption: a signal handler (or the SLURM/submitit glue, through
:func:`egovlpv2.dist.signals.request_stop`) only sets a flag.
The loop calls :func:`stop_agreed` at each step boundary; it all-reduces the flag so every rank sees the
same answer at the same step, then all ranks save together (DeepSpeed saves are collective).
"""
from __future__ import annotations

import io
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from egovlpv2.dist import collectives as C
from egovlpv2.dist.signals import stop_requested
from egovlpv2.fileio import atomic_write_bytes, atomic_write_json
from egovlpv2.rng import rng_state, set_rng_state
from egovlpv2.train import elastic_state
from egovlpv2.train.checkpoint_commit import (commit_latest, fsync_tree, resumable_tag, why_incomplete,
                                              write_completeness_record)
from egovlpv2.train.run_owner import RunOwnership

log = logging.getLogger(__name__)

def stop_agreed(device: torch.device) -> bool:
    """True on every rank when any rank requested a stop; a collective, call it on all ranks at once."""
    flag = torch.tensor([1.0 if stop_requested() else 0.0], device=device)
    if C.world_size() > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


def tag_for_step(step: int) -> str:
    return f"step{step:08d}"


WRITER_FILE = ".writer"
REPLACED_DIR = "replaced"


class CheckpointManager:
    """Save every rank's share of a DeepSpeed engine plus the trainer's own state; keep the newest K."""

    def __init__(self, directory: str | Path, engine, keep_last: int = 3, ownership: Optional[RunOwnership] = None):
        self.directory = Path(directory)
        self.engine = engine
        self.keep_last = keep_last
        self.ownership = ownership  # rank 0's hold on the run directory (None: the step directories are foreign)
        self.rank, self.world_size = C.rank(), C.world_size()

    def tags(self) -> list[str]:
        return sorted(p.name for p in self.directory.glob("step*") if p.is_dir())

    def save(self, step: int, trainer_state: dict, rank_state: dict) -> str:
        """Collective: every rank must call it at the same step."""
        tag = tag_for_step(step)
        tag_dir = self.directory / tag
        if self.rank == 0:
            if self.ownership is not None:
                self.ownership.check()
            if tag_dir.exists():  # an earlier attempt at this step (torn, or run past and resumed)
                self._clear(tag_dir)
            tag_dir.mkdir(parents=True)
            (tag_dir / WRITER_FILE).write_text(self._token or "")
        self._barrier()
        tag_dir.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save({"rng": rng_state(), **rank_state}, buffer)
        atomic_write_bytes(tag_dir / f"rank_{self.rank:05d}.pt", buffer.getvalue())
        elastic_state.save_full_state(self.engine, tag_dir)
        if self.rank == 0:
            state = {"step": step, "world_size": self.world_size,
                     "zero_stage": self.engine.zero_optimization_stage(),
                     "global_samples": self.engine.global_samples, **trainer_state}
            atomic_write_json(tag_dir / "trainer_state.json", state, indent=1)
        self._barrier()
        self.engine.save_checkpoint(str(self.directory), tag=tag, save_latest=False)
        fsync_tree(tag_dir)
        self._barrier()  # every rank's files are on disk
        if self.rank == 0:
            write_completeness_record(tag_dir, self.world_size)
            if self.ownership is not None:
                self.ownership.check()
            if commit_latest(self.directory, tag):
                self._prune(keep=tag)
        self._barrier()
        log.info("saved checkpoint %s", tag_dir)
        return tag

    @staticmethod
    def _barrier() -> None:
        if dist.is_initialized():
            dist.barrier()

    @property
    def _token(self) -> Optional[str]:
        return self.ownership.holder.token if self.ownership is not None else None

    def _written_here(self, tag_dir: Path) -> bool:
        marker = tag_dir / WRITER_FILE
        return self._token is not None and marker.is_file() and marker.read_text() == self._token

    def _clear(self, tag_dir: Path) -> None:
        """Make way for a new save of ``tag_dir``: this job's own earlier attempt is removed, another job's
        directory is moved under ``replaced/`` (never deleted: it may be what someone else is writing)."""
        if self._written_here(tag_dir):
            shutil.rmtree(tag_dir)
            return
        marker = tag_dir / WRITER_FILE
        writer = marker.read_text() if marker.is_file() else ""
        writer = writer if re.fullmatch(r"[0-9a-f]{1,64}", writer) else "unknown"
        aside = self.directory / REPLACED_DIR / f"{tag_dir.name}.{writer}"
        aside.parent.mkdir(exist_ok=True)
        while aside.exists():
            aside = aside.with_name(aside.name + "-1")
        tag_dir.rename(aside)
        log.warning("%s was written by another job: moved to %s, to be written again by this one", tag_dir, aside)

    def _prune(self, keep: str) -> None:
        """Keep the newest ``keep_last`` tags up to ``keep``; never a newer one, nor another job's torn one."""
        old = [t for t in self.tags() if t < keep]
        for tag in old[: max(0, len(old) - (self.keep_last - 1))]:
            tag_dir = self.directory / tag
            if self._written_here(tag_dir) or why_incomplete(tag_dir) is None:
                shutil.rmtree(tag_dir, ignore_errors=True)

    def load_latest(self) -> Optional[tuple[dict, dict]]:
        """Restore engine + RNG from the newest complete checkpoint; returns (trainer_state, rank_state), or
        None if there is none."""
        tag = resumable_tag(self.directory) if self.directory.is_dir() else None
        if tag is None:
            return None
        tag_dir = self.directory / tag
        trainer_state = json.loads((tag_dir / "trainer_state.json").read_text())
        if elastic_state.needs_elastic_load(trainer_state, self.world_size, self.engine.zero_optimization_stage()):
            return self._load_elastic(tag_dir, trainer_state)
        path, _ = self.engine.load_checkpoint(str(self.directory), tag=tag)
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load the checkpoint in {tag_dir}")
        # Our own file holds data only: weights_only refuses a rank file that would run code on load.
        rank_state = torch.load(tag_dir / f"rank_{self.rank:05d}.pt", weights_only=True)
        set_rng_state(rank_state.pop("rng"))
        log.info("resumed from %s (step %d)", tag_dir, trainer_state["step"])
        return trainer_state, rank_state

    def _load_elastic(self, tag_dir: Path, trainer_state: dict) -> tuple[dict, dict]:
        """Resume at another world size or ZeRO stage (see egovlpv2.train.elastic_state)."""
        if not elastic_state.has_full_state(tag_dir):
            raise RuntimeError(f"{tag_dir} was written by {trainer_state['world_size']} ranks, this run has "
                               f"{self.world_size}, and it has no {elastic_state.FULL_STATE_DIR}/ to resume from elsewhere")
        log.warning("elastic resume from %s, %s", tag_dir,
                    elastic_state.describe(trainer_state, self.world_size, self.engine.zero_optimization_stage()))
        elastic_state.load_full_state(self.engine, tag_dir)
        rng, rank_state = elastic_state.resharded_rank_state(tag_dir, self.rank, self.world_size, trainer_state["world_size"])
        if rng is not None:
            set_rng_state(rng)
        return trainer_state, rank_state
