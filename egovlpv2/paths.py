"""Paths that others could steer: ids from metadata that become file names must name a file inside their
root, never outside it; directories whose contents are trusted (uploaded as ours, or loaded as code) must be
private.

An annotation's ``clip_uid`` of ``../x`` or a csv's ``video_uid`` of ``/abs/x`` would otherwise read or
write anywhere the process may. Symlinks inside a root are the user's own choice and are not resolved.
"""
from __future__ import annotations

import os
import stat
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


def private_directory(path: Path, what: str, remedy: str, parents_below: Path | None = None) -> Path:
    """``path`` as a directory only this user can use: created (with missing parents) with mode 0700, or an
    existing real directory (not a link) of this user with no group or other permissions. Its parents below
    ``parents_below`` must be this user's too and not writable by others (no one else could swap ``path``).
    Anything else, say a directory another local user planted under a predictable name, is a UserError naming
    ``what``, ending in ``remedy``."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        pass  # a file or a dangling link: refused below
    parents = [p for p in path.parents if parents_below is not None and parents_below in (p, *p.parents)]
    for directory in (path, *parents):
        info = directory.lstat()
        loose = info.st_mode & (0o077 if directory == path else 0o022)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or loose:
            kind = "a link" if stat.S_ISLNK(info.st_mode) else "a directory" if stat.S_ISDIR(info.st_mode) else "a file"
            raise UserError(f"{what} {directory} is not private ({kind} of uid {info.st_uid}, mode "
                            f"{stat.S_IMODE(info.st_mode):04o}; it must be a directory of uid {os.getuid()} that no "
                            f"one else can use): {remedy}")
    return path
