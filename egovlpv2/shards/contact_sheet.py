"""A contact sheet of written shards: randomly chosen samples, each as a row of frames with its narration,
tags, video id and time range underneath, to see at a glance whether text and video line up and whether
the crops and colours are right.

Samples are drawn from the manifest's counts and read by seeking to them inside their tar (only the
chosen members are read), so a sheet of a full-size shard directory takes seconds.
"""
from __future__ import annotations

import io
import random
import tarfile
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from egovlpv2.data.manifest import read_manifest
from egovlpv2.data.pipeline import frames_member
from egovlpv2.data.sampling import segment_indices
from egovlpv2.data.stream import parse_meta
from egovlpv2.data.video_io import FrameDecoder, SampleError
from egovlpv2.fileio import atomic_write_bytes

TILE_W, TILE_H = 160, 120          # one frame, fitted inside with its aspect kept
TEXT_LINES, LINE_H = 5, 14
COLUMNS = 2


def sheet_size(samples: int, frames: int) -> tuple[int, int]:
    """(width, height) in pixels of a sheet of ``samples`` cells of ``frames`` frames."""
    columns = min(COLUMNS, max(samples, 1))
    rows = -(-samples // columns)
    return columns * frames * TILE_W, rows * (TILE_H + TEXT_LINES * LINE_H)


def choose_samples(manifest: dict, count: int, seed: int) -> list[tuple[str, int]]:
    """``count`` distinct (shard name, position in shard), uniformly over all samples, in sheet order."""
    total = manifest["total_samples"]
    picks = random.Random(seed).sample(range(total), min(count, total))
    starts = np.cumsum([0] + [s["samples"] for s in manifest["shards"]])
    chosen = []
    for index in picks:
        shard = int(np.searchsorted(starts, index, side="right")) - 1
        chosen.append((manifest["shards"][shard]["name"], index - int(starts[shard])))
    return chosen


def read_sample_at(path: Path, position: int) -> dict:
    """The ``position``-th sample of a tar shard, reading member headers and only that sample's data."""
    sample, keys = {}, []
    with tarfile.open(path) as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            if not keys or keys[-1] != key:
                keys.append(key)
            if len(keys) - 1 > position:
                break
            if len(keys) - 1 == position:
                sample["__key__"] = key
                sample[ext] = tar.extractfile(member).read()
    if not sample:
        raise SampleError("missing_sample", f"{path} has no sample {position}")
    return sample


def caption(meta: dict, key: str, chars: int) -> list[str]:
    """The lines under a sample: video id and time range, narration, tags, sample key."""
    video = meta.get("video_uid") or meta.get("video_id") or "?"
    start = meta.get("clip_start", meta.get("start"))
    end = meta.get("clip_end", meta.get("stop"))
    span = f"{start:.2f}-{end:.2f} s" if isinstance(start, (int, float)) and isinstance(end, (int, float)) else "whole video"
    tags = " ".join(f"{name} {meta[name]}" for name in ("verb", "noun", "labels") if name in meta)
    text = textwrap.wrap(str(meta.get("text", "")), chars) or [""]
    return [f"{video}  {span}", *text[:TEXT_LINES - 3], tags or "(no tags)", key][:TEXT_LINES]


def label_font() -> ImageFont.ImageFont:
    """The font of every caption line (LINE_H pixels apart)."""
    return ImageFont.load_default(size=11)


def _tile(frame: np.ndarray) -> Image.Image:
    image = Image.fromarray(frame)
    image.thumbnail((TILE_W, TILE_H))
    tile = Image.new("RGB", (TILE_W, TILE_H))
    tile.paste(image, ((TILE_W - image.width) // 2, (TILE_H - image.height) // 2))
    return tile


def frame_strip(frames) -> Image.Image:
    """uint8 [H, W, 3] frames side by side, each fitted inside a TILE_W x TILE_H tile (aspect kept)."""
    strip = Image.new("RGB", (len(frames) * TILE_W, TILE_H))
    for j, frame in enumerate(frames):
        strip.paste(_tile(frame), (j * TILE_W, 0))
    return strip


def save_png(image: Image.Image, out: str | Path) -> None:
    """Write ``image`` to ``out`` as PNG atomically (a reader never sees half a file), making its folder."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    image.save(png, format="PNG")
    atomic_write_bytes(out, png.getvalue())


def contact_sheet(shard_dir: str | Path, out: str | Path, samples: int = 16, frames: int = 4, seed: int = 0,
                  backend: str = "auto") -> list[str]:
    """Draw the sheet to ``out`` (PNG); returns the keys of the drawn samples in order."""
    manifest = read_manifest(shard_dir)
    chosen = choose_samples(manifest, samples, seed)
    width, height = sheet_size(len(chosen), frames)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    font = label_font()
    decoder = FrameDecoder(backend)
    keys = []
    cell_w, cell_h = frames * TILE_W, TILE_H + TEXT_LINES * LINE_H
    for i, (name, position) in enumerate(chosen):
        sample = read_sample_at(Path(shard_dir, name), position)
        meta = parse_meta(sample)
        prefix = "" if any(k in sample for k in ("mp4", "jpgs")) else "c0"
        kind, data, count = frames_member(sample, meta, prefix)
        images = decoder(kind, data, lambda n: segment_indices(n, frames, False), count)
        x0, y0 = (i % COLUMNS) * cell_w, (i // COLUMNS) * cell_h
        sheet.paste(frame_strip(images[:frames]), (x0, y0))
        for line_no, line in enumerate(caption(meta, sample["__key__"], cell_w // 7)):
            draw.text((x0 + 4, y0 + TILE_H + 1 + line_no * LINE_H), line, fill="black", font=font)
        keys.append(sample["__key__"])
    save_png(sheet, out)
    return keys
