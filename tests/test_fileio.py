import json
import os

import pytest

from egovlpv2.fileio import atomic_write_json, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "manifest.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2, "b": [1, 2]})
    assert json.loads(target.read_text()) == {"a": 2, "b": [1, 2]}
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(target, "new and longer")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_written_files_get_the_umask_mode_not_mkstemp_private(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "shared.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o644


def test_atomic_open_replaces_only_when_the_block_completes(tmp_path):
    from egovlpv2.fileio import atomic_open

    target = tmp_path / "failures.jsonl"
    with atomic_open(target) as f:
        f.write("a\n")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("b\n")
            assert target.read_text() == "a\n"  # readers see the old file while the new one streams
            raise RuntimeError("interrupted")
    assert target.read_text() == "a\n" and os.listdir(tmp_path) == ["failures.jsonl"]
    with atomic_open(target, "wb") as f:
        f.write(b"c\n")
    assert target.read_bytes() == b"c\n"
