"""Ids from metadata that become file names: they must name a file inside their root, never outside it.

An annotation's ``clip_uid`` of ``../x`` or a csv's ``video_uid`` of ``/abs/x`` would otherwise read or
write anywhere the process may. Symlinks inside a root are the user's own choice and are not resolved.
"""
from __future__ import annotations

import os
from pathlib import Path

from egovlpv2.errors import UserError


class UnsafePathError(UserError):
    """An id that would name a path outside its root; the message is the reason recorded for the row."""


def unsafe_reason(root: str | os.PathLike, part: str) -> str | None:
    """Why ``part`` cannot name a path inside ``root`` (absolute, NUL, or a ``..``); None when it can."""
    text = str(part)
    if "\x00" in text:
        return f"unsafe id {text!r}: contains NUL"
    if os.path.isabs(text):
        return f"unsafe id {text!r}: an absolute path, not a name inside {root}"
    if ".." in Path(text).parts:
        return f"unsafe id {text!r}: climbs out of {root} with '..'"
    return None


def path_inside(root: str | os.PathLike, *parts: str) -> Path:
    """``root / parts...``; raises UnsafePathError for a part that is absolute, holds NUL or a ``..``."""
    for part in parts:
        reason = unsafe_reason(root, part)
        if reason is not None:
            raise UnsafePathError(reason)
    return Path(root, *parts)
