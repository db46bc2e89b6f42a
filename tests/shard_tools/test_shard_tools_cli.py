"""The command lines: synthetic data -> shards (parallel workers) -> inspection that finds a broken sample."""
import csv
import importlib
import io
import json
import subprocess
import sys
import tarfile

import pytest

from egovlpv2.cli import run_cli
from tests.helpers import REPO, liveness, write_numbered_video



def _cli(name):
    return importlib.import_module(f"egovlpv2.cli.{name}").main


@pytest.mark.slow
def test_synthetic_to_shards_to_inspection(tmp_path, capsys):
    data = tmp_path / "syn"
    assert _cli("make_synthetic")(["--out", str(data), "--videos", "3", "--mcq-videos", "5", "--clips-per-video", "6",
                                   "--clip-spacing-s", "3", "--size", "32", "--fps", "10", "--chunk-s", "5",
                                   "--mcq-questions", "4", "--no-progress"]) == 0
    with open(data / "egoclip.csv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 18 and rows[0]["clip_text"].startswith("#C C ")
    assert len({r["video_uid"] for r in rows}) == 3
    assert (data / "videos_chunked" / rows[0]["video_uid"] / "3.mp4").is_file()  # 18 s in 5 s chunks
    mcq = json.loads((data / "egomcq.json").read_text())
    assert {q["types"] for q in mcq.values()} == {1, 2}
    assert (data / "tokenizer" / "tokenizer.json").is_file()

    # The chunked layout through the real script, two worker processes.
    shards = tmp_path / "shards"
    proc = subprocess.run([sys.executable, str(REPO / "shard_tools" / "make_shards.py"), "--task", "egoclip",
                           "--csv", str(data / "egoclip.csv"), "--videos", str(data / "videos_chunked"),
                           "--out", str(shards), "--workers", "2", "--samples-per-shard", "4", "--chunk-seconds", "5",
                           "--no-progress"], capture_output=True, text=True,
                          timeout=liveness(300))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["total_samples"] == 18 and not manifest["failures"]

    inspect = _cli("inspect_shards")
    assert inspect([str(shards), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "18 samples" in out and "bad samples: 0" in out

    first = shards / manifest["shards"][0]["name"]
    with tarfile.open(first) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    broken = next(name for name, _ in members if name.endswith(".mp4"))
    with tarfile.open(first, "w") as tar:
        for name, blob in members:
            blob = blob[:200] if name == broken else blob
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    assert inspect([str(shards), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "bad samples: 1" in out and broken.split(".")[0] in out


HEADER = ("clip_idx\tvideo_uid\tvideo_dur\tnarration_source\tnarration_ind\tnarration_time\tclip_start\tclip_end"
          "\tclip_text\ttag_verb\ttag_noun\n")


def _row(idx, uid):
    return f"{idx}\t{uid}\t2\tnarration_pass_1\t0\t1\t0.5\t1.5\t#C C walks\t[0]\t[0]\n"


def _make_shards(tmp_path, *extra):
    return run_cli(_cli("make_shards"), ["--csv", str(tmp_path / "e.csv"), "--videos", str(tmp_path / "videos"),
                                         "--out", str(tmp_path / "s"), "--workers", "1", "--no-progress", *extra])


def test_make_shards_fails_when_too_many_rows_fail(tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    write_numbered_video(tmp_path / "videos" / "here.mp4", 50, 25.0)
    (tmp_path / "e.csv").write_text(HEADER + _row(0, "nowhere") + _row(1, "here"))
    assert _make_shards(tmp_path) == 1
    assert "1 of 2 rows failed" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["failures"] == {"missing_video": 1} and manifest["total_samples"] == 1
    failure = json.loads((tmp_path / "s" / "failures.jsonl").read_text())
    assert failure == {"id": "nowhere_0", "reason": "missing_video", "detail": "nowhere.mp4"}


@pytest.mark.parametrize("case", ["no_videos", "typo_root", "not_egoclip"])
def test_inputs_that_cannot_be_right_stop_before_any_shard(tmp_path, capsys, case):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "other.mp4").write_bytes(b"")  # a video the csv does not name
    (tmp_path / "e.csv").write_text(HEADER + "".join(_row(i, f"vid{i}") for i in range(500)))
    extra = []
    if case == "typo_root":
        extra = ["--videos", str(tmp_path / "vidoes")]
    if case == "not_egoclip":
        (tmp_path / "e.csv").write_text("video_uid,clip_start\nvid0,1.0\n")
    assert _make_shards(tmp_path, *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    expected = {"no_videos": f"{tmp_path / 'videos'}: expected e.g. {tmp_path / 'videos' / 'vid0.mp4'}",
                "typo_root": f"video root not found: --videos {tmp_path / 'vidoes'}",
                "not_egoclip": "missing columns"}[case]
    assert expected in err
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").rglob("*.tar"))
    assert not (tmp_path / "s" / "manifest.json").exists()
