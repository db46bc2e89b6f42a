"""Reading and validating EgoClip-format metadata (tab-separated, one narrated clip per row).

Bad rows are returned as failures with a reason, never dropped silently. Reading a whole csv into
columns is ``egoclip_table``'s job.
"""
from __future__ import annotations

import ast
import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from egovlpv2.errors import UserError

EGOCLIP_COLUMNS = ("video_uid", "video_dur", "narration_source", "narration_ind", "narration_time",
                   "clip_start", "clip_end", "clip_text", "tag_verb", "tag_noun")
# Scene-aware partners come from the same video and the same window of this many seconds.
SCENE_WINDOW_S = 60.0
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_INT_LIST = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)?\s*,?\s*\]")


def sanitize_key(text: str) -> str:
    """A webdataset-safe key: webdataset splits a member name at its first dot, so no dots (or slashes)."""
    return _KEY_UNSAFE.sub("_", text)


@dataclass(frozen=True, slots=True)
class Failure:
    """A row that gives no sample: ``reason`` is a short kind (counted in the manifest), ``detail`` says why."""
    id: str
    reason: str
    detail: str = ""

    def to_dict(self) -> dict:
        return {"id": self.id, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ClipRow:
    key: str
    clip_idx: str
    video_uid: str
    video_dur: float
    narration_time: float
    clip_start: float
    clip_end: float
    text: str
    verbs: tuple[int, ...]
    nouns: tuple[int, ...]

    @property
    def window(self) -> int:
        return int(self.clip_start // SCENE_WINDOW_S)

    @property
    def group(self) -> str:
        return f"{self.video_uid}:{self.window}"

    def meta(self) -> dict:
        return {"id": self.key, "clip_idx": self.clip_idx, "video_uid": self.video_uid,
                "clip_start": self.clip_start, "clip_end": self.clip_end, "narration_time": self.narration_time,
                "text": self.text, "verb": list(self.verbs), "noun": list(self.nouns), "group": self.group}


def parse_tags(raw: str, limit: int) -> tuple[int, ...]:
    """A Python-list string of class indices, e.g. "[3, 17]"; raises ValueError when malformed."""
    match = _INT_LIST.fullmatch(raw.strip())
    if match:  # the common case, without the cost of literal_eval
        value = [int(v) for v in match.group(1).split(",")] if match.group(1) else []
        if any(v >= limit for v in value):
            raise ValueError(f"index outside [0, {limit}): {raw!r}")
        return tuple(value)
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"not a list literal: {raw!r}") from exc
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"not a list of ints: {raw!r}")
    if any(not 0 <= v < limit for v in value):
        raise ValueError(f"index outside [0, {limit}): {raw!r}")
    return tuple(value)


def _finite(raw: str, name: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"{name} is not finite: {raw!r}")
    return value


def parse_row(fields: dict, fallback_idx: str, num_verbs: int, num_nouns: int) -> ClipRow:
    """One csv row to a ClipRow; raises ValueError with a reason for bad rows."""
    clip_idx = (fields.get("clip_idx") or fallback_idx).strip()
    try:
        start = _finite(fields["clip_start"], "clip_start")
        end = _finite(fields["clip_end"], "clip_end")
        dur = _finite(fields["video_dur"], "video_dur")
        ntime = _finite(fields["narration_time"], "narration_time")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad number: {exc}") from exc
    text = (fields.get("clip_text") or "").strip()
    if not text:
        raise ValueError("empty text")
    if end <= start:
        raise ValueError(f"non-positive length: clip [{start}, {end}]")
    if start < 0 or start >= dur:
        raise ValueError(f"clip outside video: start {start} not in [0, {dur})")
    try:
        verbs = parse_tags(fields["tag_verb"] or "", num_verbs)
        nouns = parse_tags(fields["tag_noun"] or "", num_nouns)
    except ValueError as exc:
        raise ValueError(f"malformed tags: {exc}") from exc
    uid = fields["video_uid"].strip()
    return ClipRow(key=sanitize_key(f"{uid}_{clip_idx}"), clip_idx=clip_idx, video_uid=uid, video_dur=dur,
                   narration_time=ntime, clip_start=start, clip_end=min(end, dur), text=text,
                   verbs=verbs, nouns=nouns)


def read_header(path: str | Path) -> tuple[str, ...]:
    """The column names; raises UserError when the file is missing or is not an EgoClip csv."""
    try:
        with open(path, "rb") as f:
            first = f.readline()
    except OSError as exc:
        raise UserError(f"cannot read the EgoClip csv {path}: {exc.strerror or exc}") from exc
    try:
        header = next(csv.reader([first.decode("utf-8-sig").rstrip("\r\n")], delimiter="\t"), [])
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: header is not UTF-8; expected a tab-separated EgoClip csv") from exc
    header = [h.strip() for h in header]
    if header and header[0] in ("", "Unnamed: 0"):
        header[0] = "clip_idx"
    missing = [c for c in EGOCLIP_COLUMNS if c not in header]
    if missing:
        raise UserError(f"{path}: not a tab-separated EgoClip csv, missing columns {missing} (header {header[:12]})")
    return tuple(header)


def split_line(raw: bytes, header: tuple[str, ...]) -> dict:
    """One data line to its fields; raises ValueError for a line that is not UTF-8 or has the wrong width."""
    try:
        line = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise ValueError("text is not UTF-8") from exc
    values = line.split("\t") if '"' not in line else next(csv.reader([line], delimiter="\t"))
    if len(values) != len(header):
        raise ValueError(f"malformed row: {len(values)} fields, expected {len(header)}")
    return dict(zip(header, values))


def write_egoclip(path: str | Path, rows: list[dict]) -> None:
    """Write rows (dicts with EGOCLIP_COLUMNS and clip_idx) as an EgoClip csv."""
    columns = ("clip_idx",) + EGOCLIP_COLUMNS
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row[c] for c in columns])
