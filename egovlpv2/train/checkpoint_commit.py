"""When a checkpoint counts: committing a tag as ``latest`` and choosing one to resume from.

A tag is *complete* once every rank has written and fsynced its files; rank 0 then records every file's
size in ``complete.json`` and only after that moves ``latest`` (write, fsync, rename). DeepSpeed's own
``latest`` is not used: it is written by rank 0 as soon as rank 0's files are done, while other ranks may
still be writing theirs (a rank killed there, or a full disk, left ``latest`` naming a torn checkpoint).

At resume the newest tag whose files all match its completeness record wins; a torn or half-deleted tag is skipped
with a warning, whatever ``latest`` says. :func:`resumable_tag` is the one answer to "the latest complete
checkpoint": resume, elastic resume (the step budget) and ``egovlpv2-submit``'s checks all ask it.

``latest`` never moves backwards: a commit of an older step than the complete one ``latest`` names is
refused with a warning (a job started with ``checkpoint.auto_resume=false`` in a used run directory).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional

from egovlpv2.fileio import atomic_write_json, atomic_write_text, fsync_dir

log = logging.getLogger(__name__)

COMPLETENESS_RECORD = "complete.json"


def fsync_tree(directory: Path) -> None:
    """fsync every file under ``directory`` and the directories themselves (data and names on disk)."""
    for root, _, files in os.walk(directory):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(root)


def _files(tag_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(tag_dir)): p.stat().st_size for p in sorted(tag_dir.rglob("*"))
            if p.is_file() and p.name != COMPLETENESS_RECORD and not p.name.startswith(".")}


def write_completeness_record(tag_dir: Path, world_size: int) -> None:
    """Rank 0, after every rank synced its files: the tag's file list with sizes (the completeness record)."""
    atomic_write_json(tag_dir / COMPLETENESS_RECORD, {"world_size": world_size, "files": _files(tag_dir)}, indent=1)


def commit_latest(directory: Path, tag: str) -> bool:
    """Point ``latest`` at ``tag`` atomically (rank 0, after :func:`write_completeness_record`), unless it names a newer
    complete checkpoint; returns whether it moved."""
    latest = directory / "latest"
    named = latest.read_text().strip() if latest.is_file() else None
    if named is not None and named > tag and why_incomplete(directory / named) is None:
        log.warning("%s stays at %s: the checkpoint just written (%s) is older", latest, named, tag)
        return False
    atomic_write_text(latest, tag)
    return True


def why_incomplete(tag_dir: Path) -> Optional[str]:
    """None when every file of the completeness record is there with its size; otherwise what is wrong."""
    try:
        record = json.loads((tag_dir / COMPLETENESS_RECORD).read_text())
    except FileNotFoundError:
        return f"no {COMPLETENESS_RECORD} (a save that did not finish on every rank)"
    except ValueError as exc:
        return f"unreadable {COMPLETENESS_RECORD}: {exc}"
    for name, size in record["files"].items():
        path = tag_dir / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} were written"
    return None


def resumable_tag(directory: Path) -> Optional[str]:
    """The tag to resume from: ``latest`` if complete, else the newest complete tag (warning about each one
    skipped); None when there is no complete checkpoint."""
    latest = directory / "latest"
    named = latest.read_text().strip() if latest.is_file() else None
    tags = sorted((p.name for p in directory.glob("step*") if p.is_dir()), reverse=True)
    if named is not None and named not in tags:
        log.warning("%s names %s, which does not exist; looking for the newest complete checkpoint", latest, named)
    for tag in ([named] if named in tags else []) + [t for t in tags if t != named]:
        problem = why_incomplete(directory / tag)
        if problem is None:
            return tag
        log.warning("skipping checkpoint %s: %s", directory / tag, problem)
    return None


def latest_complete_state(directory: Path) -> Optional[tuple[Path, dict]]:
    """(tag directory, its trainer_state.json) of :func:`resumable_tag`, or None without a complete checkpoint."""
    tag = resumable_tag(Path(directory))
    if tag is None:
        return None
    tag_dir = Path(directory) / tag
    return tag_dir, json.loads((tag_dir / "trainer_state.json").read_text())
