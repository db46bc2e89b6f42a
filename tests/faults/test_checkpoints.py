"""Torn checkpoints (docs/faults.md #5): a rank killed, or a disk filling up, while writing its optimizer shard."""
import shutil
from pathlib import Path

import pytest

from egovlpv2.train.checkpoint_commit import COMPLETENESS_RECORD, resumable_tag, why_incomplete
from tests.faults.ranks import ZERO2, losses, results, run

WORKER = Path(__file__).with_name("fault_worker.py")


def resume_and_compare(out: Path, straight: Path, from_step: int) -> None:
    run(WORKER, [ZERO2, out, 8], out / "logs")
    for rank in (0, 1):
        (full,) = results(straight, rank)
        resumed = results(out, rank)[-1]
        assert resumed["finished"]
        assert losses(resumed["history"]) == losses(full["history"][from_step:])


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill", "enospc"])
def test_a_torn_save_never_becomes_latest_and_resume_continues_bitwise(fault, straight, tmp_path):
    out = tmp_path / "run"
    job = run(WORKER, [ZERO2, out, 8, "--save-fault", fault, "--save-fault-step", 6], out / "logs",
              timeout=120, expect_failure=True)
    ckpts = out / "checkpoints"
    assert (ckpts / "latest").read_text() == "step00000003"
    assert why_incomplete(ckpts / "step00000003") is None
    assert why_incomplete(ckpts / "step00000006") is not None  # torn: no completeness record
    if fault == "enospc":  # the survivor leaves at once, naming the rank whose disk filled up
        assert "rank 1 failed: OSError" in job.output(0) and "No space left" in job.output(0)
    resume_and_compare(out, straight, 3)
    assert (ckpts / "latest").read_text() == "step00000008"
    assert why_incomplete(ckpts / "step00000006") is None  # the torn attempt was replaced by a complete one


def test_resume_skips_a_torn_latest_for_the_newest_complete_tag(tmp_path, caplog):
    """``latest`` naming a torn tag (an older writer, a hand edit) does not block the resume."""
    for step, files in ((3, {"a.pt": b"x" * 10}), (6, {"a.pt": b"x" * 10}), (9, {"a.pt": b"x" * 10})):
        tag = tmp_path / f"step{step:08d}"
        tag.mkdir()
        for name, data in files.items():
            (tag / name).write_bytes(data)
        (tag / COMPLETENESS_RECORD).write_text('{"world_size": 2, "files": {"a.pt": 10}}')
    (tmp_path / "step00000009" / "a.pt").write_bytes(b"x" * 4)  # short
    (tmp_path / "step00000006" / "a.pt").unlink()  # missing
    (tmp_path / "latest").write_text("step00000009")
    assert resumable_tag(tmp_path) == "step00000003"
    assert "a.pt has 4 bytes, 10 were written" in caplog.text and "a.pt is missing" in caplog.text
    shutil.rmtree(tmp_path / "step00000003")
    assert resumable_tag(tmp_path) is None
