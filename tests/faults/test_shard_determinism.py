"""make_shards output is byte-deterministic on clips of several seconds at the default encode options: across
processes, and for the same clip encoded again after others in one process."""
import hashlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from egovlpv2.shards.egoclip_csv import write_egoclip
from egovlpv2.shards.source_reader import SourceReader
from egovlpv2.shards.synthetic import write_video
from egovlpv2.shards.transcode import EncodeOptions, Segment, cut_clip
from tests.helpers import egoclip_row
from tests.helpers import liveness

SECONDS, FPS, WIDTH, HEIGHT = 8, 30.0, 640, 360  # scaled to 454x256 by the default short side


def _panning_texture(seed: int):
    """A camera panning over fine random texture, like head-mounted video: every frame costs real bits."""
    rng = np.random.default_rng(seed)
    world = cv2.resize(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8), (WIDTH * 2, HEIGHT * 2),
                       interpolation=cv2.INTER_CUBIC)
    for n in range(int(SECONDS * FPS)):
        x, y = int(WIDTH * 0.5 * (1 + np.sin(n / 40))), int(HEIGHT * 0.5 * (1 + np.sin(n / 55)))
        yield world[y:y + HEIGHT, x:x + WIDTH]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("determinism")
    (root / "v").mkdir()
    rows = []
    for v in range(2):  # as commonly shared sources are: long GOP, B-frames, CABAC
        write_video(root / "v" / f"vid{v}.mp4", _panning_texture(v), FPS, gop=250, crf=23, preset="veryfast", bframes=3)
        rows += [egoclip_row(2 * v + k, f"vid{v}", 0.5 + 3.5 * k, 3.5 + 3.5 * k, dur=SECONDS) for k in range(2)]
    write_egoclip(root / "e.csv", rows)
    return root


def _shard_digests(sources, out) -> dict:
    args = ["--task", "egoclip", "--csv", str(sources / "e.csv"), "--videos", str(sources / "v"), "--out", str(out),
            "--workers", "2", "--samples-per-shard", "2", "--no-progress"]
    done = subprocess.run([sys.executable, "-m", "egovlpv2.cli.make_shards", *args], capture_output=True, text=True,
                          timeout=liveness(600))
    assert done.returncode == 0, done.stderr
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tar"))}


def test_two_runs_write_the_same_bytes(sources, tmp_path):
    """R2-9: two make_shards processes, default encode options, 3 s clips from 640x360 B-frame sources."""
    first, second = _shard_digests(sources, tmp_path / "a"), _shard_digests(sources, tmp_path / "b")
    assert len(first) == 2 and first == second


def test_a_clip_encodes_to_the_same_bytes_after_other_clips(sources):
    """R2-9: the same clip cut again, after other clips, through one reader and through a fresh one."""
    video = Segment(str(sources / "v" / "vid0.mp4"), 0.0)
    opts = EncodeOptions()
    reader = SourceReader()
    digests = []
    for start in (1.0, 4.5, 1.0):
        data, info = cut_clip([video], start, start + 3.0, opts, reader)
        assert (info["width"], info["height"]) == (454, 256) and info["num_frames"] == 90
        if start == 1.0:
            digests.append(hashlib.sha256(data).hexdigest())
    reader.close()
    data, _ = cut_clip([video], 1.0, 4.0, opts)
    digests.append(hashlib.sha256(data).hexdigest())
    assert len(set(digests)) == 1
