"""Atomic file writes: a reader, or a rerun after a crash, sees the old file or the whole new one, never a torn one."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _default_mode() -> int:
    """The mode ``open()`` would give a new file: mkstemp's 0600 would hide shared outputs from other users."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def leftover_temporaries(directory: str | os.PathLike) -> list[tuple[Path, str]]:
    """The temporaries of atomic writes in ``directory`` that a killed process left behind, each with the name
    of the file it was to replace (``.{name}.{random}.tmp`` -> ``name``)."""
    return [(tmp, tmp.name[1:-len(".tmp")].rpartition(".")[0]) for tmp in Path(directory).glob(".*.tmp")]


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """A file to stream into (text ``"w"`` or binary ``"wb"``) that replaces ``path`` only when the block
    completes; for outputs too large to hold in memory."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _default_mode())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, **dump_kwargs: Any) -> None:
    atomic_write_text(path, json.dumps(obj, **dump_kwargs))


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
    """Hex sha256 of a file's bytes, read in chunks (weights files run to gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
