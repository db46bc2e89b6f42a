"""Test videos whose frames carry their own frame number, and small EgoClip csv rows."""
from __future__ import annotations

import numpy as np

from egovlpv2.shards.synthetic import write_video

BITS = 12
CELL = 8  # each bit is an 8x8 black or white cell: survives H.264 at the test quality


def numbered_frame(n: int, height: int = 48, width: int = 112) -> np.ndarray:
    image = np.full((height, width, 3), 128, np.uint8)
    for b in range(BITS):
        row, col = divmod(b, width // CELL)
        value = 255 if (n >> b) & 1 else 0
        image[row * CELL:(row + 1) * CELL, col * CELL:(col + 1) * CELL] = value
    return image


def read_number(frame: np.ndarray) -> int:
    width = frame.shape[1]
    n = 0
    for b in range(BITS):
        row, col = divmod(b, width // CELL)
        cell = frame[row * CELL + 2:(row + 1) * CELL - 2, col * CELL + 2:(col + 1) * CELL - 2]
        n |= int(cell.mean() > 128) << b
    return n


def write_numbered_video(path, num_frames: int, fps: float, first: int = 0) -> None:
    """Frame i shows the number first + i (chunks continue the numbering of the whole video)."""
    write_video(path, (numbered_frame(first + i) for i in range(num_frames)), fps, gop=15, crf=12)


def egoclip_row(idx, uid, start, end, text="#C C lifts the red ball", verb="[0]", noun="[0]", dur=600.0) -> dict:
    return {"clip_idx": idx, "video_uid": uid, "video_dur": dur, "narration_source": "narration_pass_1",
            "narration_ind": 0, "narration_time": (start + end) / 2, "clip_start": start, "clip_end": end,
            "clip_text": text, "tag_verb": verb, "tag_noun": noun}


def write_gray_video(path, num_frames: int, fps: float) -> None:
    """Frame n is a uniform grey of level 10 + 6 (n mod 40): readable after any resize, crop or re-encode."""
    write_video(path, (np.full((48, 64, 3), 10 + 6 * (n % 40), np.uint8) for n in range(num_frames)), fps, gop=15, crf=10)


def gray_number(frame) -> int:
    """The frame number mod 40."""
    return round((float(np.asarray(frame, dtype=np.float64).mean()) - 10) / 6)
