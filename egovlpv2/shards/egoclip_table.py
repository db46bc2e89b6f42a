"""An EgoClip csv as columns: read as a stream, in byte ranges over worker processes, into numpy arrays.

A full EgoClip csv has 3.85M rows; a dict or dataclass per row would take gigabytes. The planner needs
only the video, start time and key of each row; a shard's writer reads its own rows again from the
stored byte offsets (``load_rows``). Every row is validated here, so a bad row is a failure before any
shard is planned.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from egovlpv2.shards.egoclip_csv import ClipRow, Failure, parse_row, read_header, split_line

# Below this size one process reads the csv: starting workers would cost more than they save.
PARALLEL_BYTES = 32 << 20


@dataclass
class EgoclipTable:
    """The valid rows of an EgoClip csv (file order), one array per column."""
    path: str
    header: tuple[str, ...]
    offsets: np.ndarray            # int64: byte offset of the row's line in the file
    numbers: np.ndarray            # int32: data row number (the clip index of a csv without one)
    video: np.ndarray              # int32: index into ``uids``
    start: np.ndarray              # float64: clip_start (s)
    keys: np.ndarray               # bytes: the sample key
    uids: list[str]                # distinct video ids in order of first appearance
    video_dur: np.ndarray          # float64 per video: the longest video_dur its rows give
    failures: list[Failure]
    rows_read: int                 # data rows read, valid or not

    def __len__(self) -> int:
        return len(self.offsets)


def iter_lines(path: str | Path, start: int | None = None, end: int | None = None,
               first_row: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """(data row number, byte offset, line) of every non-blank data line in [start, end) (default: all),
    streaming; ``start`` is a line start and ``first_row`` its data row number."""
    with open(path, "rb") as f:
        if start is None:
            start = len(f.readline())
        f.seek(start)
        offset, n = start, first_row
        for raw in f:
            if end is not None and offset >= end:
                break
            if raw.strip():
                yield n, offset, raw
            offset += len(raw)
            n += 1


def first_video_uids(path: str | Path, count: int) -> list[str]:
    """The first ``count`` distinct video ids of the csv, read from its start (stops early)."""
    header = read_header(path)
    column = header.index("video_uid")
    seen: dict[str, None] = {}
    for _, _, raw in iter_lines(path):
        values = raw.decode("utf-8", "replace").rstrip("\r\n").split("\t")
        if len(values) == len(header) and values[column].strip():
            seen.setdefault(values[column].strip())
            if len(seen) >= count:
                break
    return list(seen)


def _ranges(path: str | Path, parts: int) -> list[tuple[int, int, int]]:
    """``parts`` byte ranges of the data lines, each starting at a line: (start, end, first data row)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        first = len(f.readline())
        starts = [first]
        for i in range(1, parts):
            f.seek(max(first + (size - first) * i // parts - 1, starts[-1]))
            f.readline()  # to the start of the next line
            starts.append(max(f.tell(), starts[-1]))
        rows, counted = [0], first
        for start in starts[1:]:
            f.seek(counted)
            rows.append(rows[-1] + f.read(start - counted).count(b"\n"))
            counted = start
    ends = starts[1:] + [size]
    return [(s, e, n) for s, e, n in zip(starts, ends, rows) if e > s]


def _scan_range(job: tuple) -> dict:
    path, header, start, end, first_row, num_verbs, num_nouns, limit = job
    offsets, numbers, video, starts, durations = array("q"), array("i"), array("i"), array("d"), array("d")
    keys: list[bytes] = []
    codes: dict[str, int] = {}
    failures: list[Failure] = []
    rows_read = 0
    for n, offset, raw in iter_lines(path, start, end, first_row):
        if limit is not None and len(offsets) >= limit:
            break
        rows_read += 1
        try:
            fields = split_line(raw, header)
        except ValueError as exc:
            failures.append(Failure(f"line{n + 2}", "bad_row", str(exc)))
            continue
        try:
            row = parse_row(fields, str(n), num_verbs, num_nouns)
        except ValueError as exc:
            failures.append(Failure(fields.get("clip_idx") or f"line{n + 2}", "bad_row", str(exc)))
            continue
        code = codes.setdefault(row.video_uid, len(codes))
        if code == len(durations):
            durations.append(row.video_dur)
        elif row.video_dur > durations[code]:
            durations[code] = row.video_dur
        offsets.append(offset)
        numbers.append(n)
        video.append(code)
        starts.append(row.clip_start)
        keys.append(row.key.encode())
    return {"offsets": np.frombuffer(offsets, np.int64), "numbers": np.frombuffer(numbers, np.int32),
            "video": np.frombuffer(video, np.int32), "start": np.frombuffer(starts, np.float64),
            "keys": np.array(keys, dtype=bytes) if keys else np.zeros(0, "S1"), "uids": list(codes),
            "durations": np.frombuffer(durations, np.float64), "failures": failures, "rows_read": rows_read}


def scan_egoclip(path: str | Path, num_verbs: int = 118, num_nouns: int = 582, limit: int | None = None,
                 workers: int = 1) -> EgoclipTable:
    """Read and validate an EgoClip csv into columns; a failure per bad row.

    The clip index column may be named ``clip_idx`` or left unnamed (a saved pandas index); without it
    the data row number is the index. Duplicate keys keep the first row. ``limit`` stops after that many
    valid rows (read by one process). Large files are read in ``workers`` byte ranges in parallel."""
    header = read_header(path)
    parallel = workers > 1 and limit is None and os.path.getsize(path) > PARALLEL_BYTES
    jobs = [(str(path), header, s, e, n, num_verbs, num_nouns, limit) for s, e, n in _ranges(path, workers if parallel else 1)]
    if len(jobs) > 1:
        with mp.get_context("spawn").Pool(len(jobs)) as pool:
            parts = pool.map(_scan_range, jobs)
    else:
        parts = [_scan_range(job) for job in jobs]
    uids: dict[str, int] = {}
    durations: list[float] = []
    for part in parts:  # one numbering of the videos, in order of first appearance in the file
        remap = np.empty(len(part["uids"]), np.int32)
        for i, (uid, dur) in enumerate(zip(part["uids"], part["durations"])):
            code = remap[i] = uids.setdefault(uid, len(uids))
            if code == len(durations):
                durations.append(float(dur))
            else:
                durations[code] = max(durations[code], float(dur))
        part["video"] = remap[part["video"]] if len(part["video"]) else part["video"]
    column = {name: np.concatenate([p[name] for p in parts]) for name in ("offsets", "numbers", "video", "start", "keys")}
    failures = [f for p in parts for f in p["failures"]]
    keep = np.zeros(len(column["keys"]), dtype=bool)
    keep[np.unique(column["keys"], return_index=True)[1]] = True
    failures += [Failure(k.decode(), "duplicate_id", "duplicate id") for k in column["keys"][~keep]]
    return EgoclipTable(str(path), header, column["offsets"][keep], column["numbers"][keep], column["video"][keep],
                        column["start"][keep], column["keys"][keep], list(uids), np.array(durations, np.float64),
                        failures, sum(p["rows_read"] for p in parts))


def load_rows(path: str | Path, header: tuple[str, ...], offsets, numbers, num_verbs: int = 118,
              num_nouns: int = 582) -> list[ClipRow]:
    """The rows at ``offsets`` with data row ``numbers`` (rows that ``scan_egoclip`` accepted), read again."""
    rows = []
    with open(path, "rb") as f:
        for offset, n in zip(offsets, numbers):
            f.seek(int(offset))
            rows.append(parse_row(split_line(f.readline(), header), str(n), num_verbs, num_nouns))
    return rows
