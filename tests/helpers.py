"""What many test folders share: the checkout's root, liveness bounds that scale with one factor, a
torchrun launcher for multi-rank runs, test videos whose frames carry their own frame number, small
EgoClip csv rows, and stand-in checkpoint tags for the checks that read only their files' presence."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SUBMIT = REPO / "launch" / "submit.py"

# Every wall-clock bound in the tests is a liveness bound (it catches hangs, never slowness) and is
# multiplied by this factor. The default (3) keeps a loaded 2-core machine, shared with other jobs, passing;
# a hang still fails, only later. Lower it on a quiet machine to fail faster, raise it on a slower one.
TIME_FACTOR = float(os.environ.get("EGOVLPV2_TEST_TIME_FACTOR", "3"))


def liveness(seconds: float) -> float:
    """A wall-clock bound for something that takes far less on an idle machine, scaled by TIME_FACTOR."""
    return seconds * TIME_FACTOR


def torchrun(script, args, nproc=2, timeout=240, env_extra=None, expect_failure=False):
    """Run ``script`` on ``nproc`` real CPU ranks with torchrun on a free port (bounded by
    ``liveness(timeout)``); fail with its output."""
    from egovlpv2.dist.env import free_port  # here, not above: tests/slurm/cluster.sh imports this module bare
    env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **(env_extra or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(script), *map(str, args)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=liveness(timeout))
    if expect_failure:
        assert proc.returncode != 0, "the run was expected to die"
    elif proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def run_submit(*args: str, env: dict | None = None, timeout: float = 120) -> str:
    """Run launch/submit.py and return its stdout (failing the test with its output on error)."""
    out = subprocess.run([sys.executable, str(SUBMIT), *args], capture_output=True, text=True,
                         timeout=liveness(timeout), cwd=REPO, env={**os.environ, **(env or {})})
    assert out.returncode == 0, f"submit.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


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
    from egovlpv2.shards.synthetic import write_video
    write_video(path, (numbered_frame(first + i) for i in range(num_frames)), fps, gop=15, crf=12)


def egoclip_row(idx, uid, start, end, text="#C C lifts the red ball", verb="[0]", noun="[0]", dur=600.0) -> dict:
    return {"clip_idx": idx, "video_uid": uid, "video_dur": dur, "narration_source": "narration_pass_1",
            "narration_ind": 0, "narration_time": (start + end) / 2, "clip_start": start, "clip_end": end,
            "clip_text": text, "tag_verb": verb, "tag_noun": noun}


def write_gray_video(path, num_frames: int, fps: float) -> None:
    """Frame n is a uniform grey of level 10 + 6 (n mod 40): readable after any resize, crop or re-encode."""
    from egovlpv2.shards.synthetic import write_video
    write_video(path, (np.full((48, 64, 3), 10 + 6 * (n % 40), np.uint8) for n in range(num_frames)), fps, gop=15, crf=10)


def gray_number(frame) -> int:
    """The frame number mod 40."""
    return round((float(np.asarray(frame, dtype=np.float64).mean()) - 10) / 6)


def write_checkpoint_tag(ckpt: Path, step: int, global_samples: int, total_steps: int, world_size: int = 2) -> Path:
    """A complete ZeRO-2 checkpoint tag of ``world_size`` ranks whose tensor files hold dummy bytes: enough for
    the checks that read only its trainer state and completeness record, which load no tensor."""
    from egovlpv2.train.checkpoint_commit import write_completeness_record

    tag_dir = ckpt / f"step{step:08d}"
    (tag_dir / "full_state").mkdir(parents=True)
    (tag_dir / "trainer_state.json").write_text(json.dumps(
        {"step": step, "world_size": world_size, "zero_stage": 2, "global_samples": global_samples,
         "total_steps": total_steps}))
    for name in (*(f"rank_{r:05d}.pt" for r in range(world_size)), "full_state/part_00000.pt"):
        (tag_dir / name).write_bytes(b"x" * 10)
    write_completeness_record(tag_dir, world_size)
    return tag_dir
