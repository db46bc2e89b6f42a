"""A small procedurally generated EgoClip-like dataset that a tiny model can learn on a CPU.

Each video has its own drifting texture; each narrated clip shows one coloured object (the noun) moving
in one way (the verb), and its narration says so: "#C C lifts the red ball". Motions are vertical or
in place, so horizontal flips keep the text true. Videos are written whole (``{uid}.mp4``) and,
optionally, in chunks (``{uid}/{k}.mp4``), next to an EgoClip csv, an ``egomcq.json`` built from
held-out videos, and a byte-level BPE tokenizer trained on the narrations.
"""
from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from egovlpv2.fileio import atomic_write_json
from egovlpv2.shards.egoclip_csv import write_egoclip
from egovlpv2.data.tokenizer import build_bpe_tokenizer

# (narration verb, motion); the tag index is the position.
VERBS = (("lifts", "up"), ("lowers", "down"), ("shakes", "shake"), ("holds", "still"))
# (colour name, noun, shape, RGB); the tag index is the position.
NOUNS = (("red", "ball", "circle", (230, 30, 30)), ("green", "box", "square", (30, 200, 40)),
         ("blue", "cup", "triangle", (40, 60, 235)), ("yellow", "plate", "ring", (240, 220, 20)),
         ("purple", "bottle", "bar", (160, 40, 200)), ("white", "knife", "diamond", (245, 245, 245)))


@dataclass
class SyntheticSpec:
    videos: int = 16               # training videos (the csv)
    mcq_videos: int = 6            # held-out videos for egomcq.json
    clips_per_video: int = 20
    clip_spacing_s: float = 4.0    # one narration every this many seconds: 20 clips span 80 s, two scene windows
    clip_len_s: float = 1.2
    fps: float = 15.0
    size: int = 96
    chunk_s: float = 0.0           # > 0 also writes the chunked layout with chunks of this length
    mcq_questions: int = 40        # half inter-video (type 1), half intra-video (type 2)
    vocab_size: int = 512
    seed: int = 0


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, gop: int = 30, crf: int = 20,
                preset: str = "ultrafast", bframes: int = 0) -> None:
    """Encode RGB uint8 frames as H.264 mp4 at ``fps`` (a float such as 29.97 is taken as 30000/1001)."""
    import av

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as out:
        stream = None
        for i, image in enumerate(frames):
            if stream is None:
                stream = out.add_stream("libx264", rate=rate)
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.codec_context.gop_size = gop
                stream.codec_context.thread_count = 1
                stream.options = {"preset": preset, "crf": str(crf), "x264-params": f"bframes={bframes}"}
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        if stream is not None:
            out.mux(stream.encode())


def _draw(image: np.ndarray, shape: str, colour: tuple, cx: float, cy: float, r: int) -> None:
    c, x, y = tuple(int(v) for v in colour), int(cx), int(cy)
    if shape == "circle":
        cv2.circle(image, (x, y), r, c, -1)
    elif shape == "square":
        cv2.rectangle(image, (x - r, y - r), (x + r, y + r), c, -1)
    elif shape == "triangle":
        cv2.fillPoly(image, [np.array([(x, y - r), (x - r, y + r), (x + r, y + r)], np.int32)], c)
    elif shape == "ring":
        cv2.circle(image, (x, y), r, c, max(3, r // 3))
    elif shape == "bar":
        cv2.rectangle(image, (x - r, y - r // 3), (x + r, y + r // 3), c, -1)
    else:  # diamond
        cv2.fillPoly(image, [np.array([(x, y - r), (x - r, y), (x, y + r), (x + r, y)], np.int32)], c)


def _position(motion: str, u: float, x0: float, size: int) -> tuple[float, float]:
    """Object centre at clip progress ``u`` in [0, 1]."""
    top, bottom = 0.25 * size, 0.75 * size
    if motion == "up":
        return x0, bottom + (top - bottom) * u
    if motion == "down":
        return x0, top + (bottom - top) * u
    if motion == "shake":
        return x0 + 0.16 * size * math.sin(4 * math.pi * u), size / 2
    return x0, size / 2


class _Video:
    """One synthetic video: a texture that drifts, and narrated clips (verb, noun, start, end)."""

    def __init__(self, spec: SyntheticSpec, rng: random.Random):
        self.spec = spec
        self.uid = str(uuid.UUID(int=rng.getrandbits(128)))
        self.duration = spec.clips_per_video * spec.clip_spacing_s
        tex_rng = np.random.default_rng(rng.getrandbits(32))
        base = tex_rng.integers(40, 110, size=(spec.size // 8 + 2, spec.size // 8 + 2, 3)).astype(np.uint8)
        self.texture = cv2.resize(base, (spec.size * 2, spec.size * 2), interpolation=cv2.INTER_CUBIC)
        self.texture = (self.texture.astype(np.int16) + tex_rng.integers(-12, 12, self.texture.shape)).clip(0, 255).astype(np.uint8)
        self.clips = []
        for k in range(spec.clips_per_video):
            centre = (k + 0.5) * spec.clip_spacing_s + rng.uniform(-0.5, 0.5)
            start = round(centre - spec.clip_len_s / 2, 3)
            self.clips.append({"verb": rng.randrange(len(VERBS)), "noun": rng.randrange(len(NOUNS)),
                               "x0": rng.uniform(0.3, 0.7) * spec.size, "narration_time": round(centre, 3),
                               "clip_start": start, "clip_end": round(start + spec.clip_len_s, 3)})

    def frame(self, t: float) -> np.ndarray:
        size, shift = self.spec.size, int(t * 6) % self.spec.size  # slow diagonal drift: the codec has work to do
        image = self.texture[shift:shift + size, shift:shift + size].copy()
        for clip in self.clips:
            if clip["clip_start"] <= t < clip["clip_end"]:
                u = (t - clip["clip_start"]) / (clip["clip_end"] - clip["clip_start"])
                _, _, shape, colour = NOUNS[clip["noun"]]
                cx, cy = _position(VERBS[clip["verb"]][1], u, clip["x0"], size)
                _draw(image, shape, colour, cx, cy, max(6, size // 7))
        return image

    def frames(self, t0: float, t1: float):
        n0, n1 = math.ceil(t0 * self.spec.fps - 1e-9), math.ceil(min(t1, self.duration) * self.spec.fps - 1e-9)
        for n in range(n0, n1):
            yield self.frame(n / self.spec.fps)


def narration(verb: int, noun: int) -> str:
    colour, name, _, _ = NOUNS[noun]
    return f"#C C {VERBS[verb][0]} the {colour} {name}"


def _row(video: _Video, k: int, clip_idx: int) -> dict:
    c = video.clips[k]
    return {"clip_idx": clip_idx, "video_uid": video.uid, "video_dur": video.duration,
            "narration_source": "narration_pass_1", "narration_ind": k, "narration_time": c["narration_time"],
            "clip_start": c["clip_start"], "clip_end": c["clip_end"], "clip_text": narration(c["verb"], c["noun"]),
            "tag_verb": f"[{c['verb']}]", "tag_noun": f"[{c['noun']}]"}


def _distractors(candidates: list[tuple], answer: tuple, rng: random.Random, other_videos: bool) -> list[tuple] | None:
    """Four (video, k, text) distractors whose narrations differ from the answer's and from each other;
    for inter-video questions each from a different video."""
    texts, videos, picked = {answer[2]}, {id(answer[0])}, []
    for cand in rng.sample(candidates, len(candidates)):
        if cand[2] in texts or (other_videos and id(cand[0]) in videos):
            continue
        texts.add(cand[2])
        videos.add(id(cand[0]))
        picked.append(cand)
        if len(picked) == 4:
            return picked
    return None


def _egomcq(videos: list[_Video], count: int, rng: random.Random) -> dict:
    """Half inter-video questions (type 1: candidates from five videos), half intra-video (type 2)."""
    clips = [(v, k, narration(c["verb"], c["noun"])) for v in videos for k, c in enumerate(v.clips)]
    questions = {}
    for _ in range(count * 20):
        if len(questions) >= count:
            break
        kind = 1 if len(questions) < count // 2 else 2
        answer = rng.choice(clips)
        same = [c for c in clips if (c[0] is answer[0]) == (kind == 2) and c is not answer]
        distractors = _distractors(same, answer, rng, other_videos=kind == 1)
        if distractors is None:
            continue
        position = rng.randrange(5)
        choices = distractors[:position] + [answer] + distractors[position:]
        questions[str(len(questions))] = {
            "query": _row(answer[0], answer[1], 0), "answer": position, "types": kind,
            "choices": {str(i): _row(v, k, 0) for i, (v, k, _) in enumerate(choices)}}
    return questions


def make_synthetic(out_dir: str | Path, spec: SyntheticSpec = SyntheticSpec(), progress: bool = True) -> dict:
    """Write ``egoclip.csv``, ``videos/`` (and ``videos_chunked/``), ``egomcq.json`` and ``tokenizer/``."""
    from tqdm import tqdm

    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rng = random.Random(spec.seed)
    videos = [_Video(spec, rng) for _ in range(spec.videos + spec.mcq_videos)]
    for video in tqdm(videos, desc="videos", disable=not progress):
        write_video(out / "videos" / f"{video.uid}.mp4", video.frames(0, video.duration), spec.fps)
        if spec.chunk_s > 0:
            chunk_dir = out / "videos_chunked" / video.uid
            chunk_dir.mkdir(parents=True, exist_ok=True)
            for k in range(math.ceil(video.duration / spec.chunk_s)):
                write_video(chunk_dir / f"{k}.mp4", video.frames(k * spec.chunk_s, (k + 1) * spec.chunk_s), spec.fps)
    train, held_out = videos[:spec.videos], videos[spec.videos:]
    rows = [_row(v, k, 0) for v in train for k in range(len(v.clips))]
    for i, row in enumerate(rows):
        row["clip_idx"] = i
    write_egoclip(out / "egoclip.csv", rows)
    mcq = _egomcq(held_out, spec.mcq_questions, rng) if len(held_out) >= 5 else {}
    atomic_write_json(out / "egomcq.json", mcq, indent=1)
    texts = [r["clip_text"] for r in rows] + [narration(c["verb"], c["noun"]) for v in held_out for c in v.clips]
    build_bpe_tokenizer(texts, out / "tokenizer", spec.vocab_size)
    return {"clips": len(rows), "videos": len(train), "mcq_questions": len(mcq), "out": str(out)}
