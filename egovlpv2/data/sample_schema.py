"""The schema of a pre-training sample's JSON, checked before the loader touches a field.

One mistyped field (``verb: "3"``, ``clips: []``, a missing ``id``) used to crash a rank, and some
(``verb: [1.5]``, a list as ``text``) went through silently. Here every field the loader reads is checked;
a sample that fails raises SampleError with the counter it is skipped under: ``bad_meta`` (missing or
mistyped field), ``empty_text`` or ``tag_out_of_range``.
"""
from __future__ import annotations

from egovlpv2.data.video_io import SampleError


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_clips(meta: dict) -> dict:
    """``clips``: {member: {num_frames: int >= 0, ...}} (absent: no timing stored); returns it."""
    clips = meta.get("clips", {})
    if not isinstance(clips, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in clips.items()):
        raise SampleError("bad_meta", f"clips must map member names to objects, got {type(clips).__name__}")
    for name, info in clips.items():
        count = info.get("num_frames", 0)
        if not _is_int(count) or count < 0:
            raise SampleError("bad_meta", f"clips.{name}.num_frames must be a count, got {count!r}")
    return clips


def _tags(meta: dict, field: str, limit: int) -> None:
    tags = meta.get(field, [])
    if not isinstance(tags, list) or not all(_is_int(t) for t in tags):
        raise SampleError("bad_meta", f"{field} must be a list of class indices, got {tags!r}")
    if any(not 0 <= t < limit for t in tags):
        raise SampleError("tag_out_of_range", f"{field} {tags} outside [0, {limit})")


def check_pretrain_meta(meta: dict, num_verbs: int, num_nouns: int) -> None:
    """Raise SampleError unless ``meta`` is a usable pre-training sample (see the module docstring)."""
    for field in ("id", "text"):
        if field not in meta:
            raise SampleError("bad_meta", f"missing {field}")
        if not isinstance(meta[field], str):
            raise SampleError("bad_meta", f"{field} must be a string, got {type(meta[field]).__name__}")
    if not meta["id"]:
        raise SampleError("bad_meta", "empty id")
    if not meta["text"].strip():
        raise SampleError("empty_text")
    if not isinstance(meta.get("group", ""), str):
        raise SampleError("bad_meta", f"group must be a string, got {type(meta['group']).__name__}")
    _tags(meta, "verb", num_verbs)
    _tags(meta, "noun", num_nouns)
    check_clips(meta)
