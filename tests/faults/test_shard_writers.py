"""The shard writer among other writers: a planted staging directory, the same part run twice at once, a shard
file that no longer matches its record, and parts given different options."""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

import pytest

from egovlpv2.cli import make_shards as make_shards_cli
from egovlpv2.cli import run_cli
from egovlpv2.errors import UserError
from egovlpv2.shards.egoclip_csv import write_egoclip
from egovlpv2.shards.make import ShardRun, make_shards
from egovlpv2.shards.publish import default_staging, write_shards_to
from egovlpv2.shards.transcode import EncodeOptions
from tests.helpers import egoclip_row, write_numbered_video
from tests.helpers import REPO, liveness

WORKER = REPO / "tests" / "faults" / "shard_writer_worker.py"
NOBODY = 65534


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Four short videos of two narrated clips each: with two samples per shard, four shards."""
    root = tmp_path_factory.mktemp("sources")
    (root / "v").mkdir()
    rows = []
    for v in range(4):
        write_numbered_video(root / "v" / f"vid{v}.mp4", 45, 15.0)
        rows += [egoclip_row(2 * v + k, f"vid{v}", 0.2 + 1.2 * k, 1.2 + 1.2 * k, dur=3.0) for k in range(2)]
    write_egoclip(root / "e.csv", rows)
    return root


def _run(sources, out, **kw) -> ShardRun:
    return ShardRun(task="egoclip", csv=str(sources / "e.csv"), videos=str(sources / "v"), out=str(out), workers=1,
                    samples_per_shard=2, progress=False, encode=EncodeOptions(short_side=0), **kw)


def _args(sources, out, *extra) -> list[str]:
    return ["--task", "egoclip", "--csv", str(sources / "e.csv"), "--videos", str(sources / "v"), "--out", str(out),
            "--workers", "1", "--samples-per-shard", "2", "--short-side", "0", "--no-progress", *extra]


def _cli(args, capsys) -> tuple[int, str]:
    capsys.readouterr()
    status = run_cli(make_shards_cli.main, args)
    return status, capsys.readouterr().err


def _rewrite_narrations(tar_path) -> None:
    """Replace every narration in the shard, keeping the tar valid (what a planted shard would carry)."""
    members = []
    with tarfile.open(tar_path) as tar:
        for info in tar.getmembers():
            data = tar.extractfile(info).read()
            if info.name.endswith(".json"):
                data = data.replace(b"lifts the red ball", b"drops the red ball")
            members.append((info, data))
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _sizes_match(out) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["shards"]:
        assert (out / entry["name"]).stat().st_size == entry["bytes"], entry


def test_a_planted_staging_directory_is_refused_and_nothing_is_uploaded(sources, s3_server, tmp_path):
    """R2-4: another user pre-creates the predictable default staging directory (mode 0777) holding a shard
    with rewritten narrations and a record that matches it."""
    fs = s3_server.filesystem()
    fs.mkdir("planted")
    url = "s3://planted/egoclip"
    planted = default_staging(url)
    make_shards(_run(sources, planted))  # the planted directory looks like an unfinished run of this plan
    (planted / "manifest.json").unlink()
    _rewrite_narrations(planted / "egoclip-000000.tar")
    record = json.loads((planted / "records" / "egoclip-000000.json").read_text())
    data = (planted / "egoclip-000000.tar").read_bytes()
    record.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (planted / "records" / "egoclip-000000.json").write_text(json.dumps(record))
    for path in [planted, *planted.rglob("*")]:
        os.chmod(path, 0o777)
        if os.getuid() == 0:
            os.chown(path, NOBODY, NOBODY)
    try:
        with pytest.raises(UserError, match="not private"):
            write_shards_to(_run(sources, url))
        fs.invalidate_cache()
        assert not fs.exists("planted/egoclip") or not fs.find("planted/egoclip")
    finally:
        for path in [planted, *planted.rglob("*")]:
            os.chmod(path, 0o700)
        shutil.rmtree(planted)


def test_a_staged_shard_that_no_longer_matches_its_record_is_written_again(sources, s3_server, tmp_path):
    """R2-4 keep rule: a shard in the (private) staging directory whose bytes changed after its record was
    written is re-encoded, never uploaded as it is."""
    fs = s3_server.filesystem()
    fs.mkdir("restaged")
    clean = tmp_path / "clean"
    make_shards(_run(sources, clean))
    staging = tmp_path / "staging"
    staging.mkdir(mode=0o700)
    make_shards(_run(sources, staging))
    (staging / "manifest.json").unlink()
    _rewrite_narrations(staging / "egoclip-000001.tar")  # same size: only the content hash tells
    assert (staging / "egoclip-000001.tar").stat().st_size == (clean / "egoclip-000001.tar").stat().st_size
    _, _, ok, _ = write_shards_to(_run(sources, "s3://restaged/egoclip"), str(staging))
    assert ok
    for name in ("egoclip-000000.tar", "egoclip-000001.tar"):
        assert fs.cat_file(f"restaged/egoclip/{name}") == (clean / name).read_bytes(), name


def test_a_second_writer_of_the_same_part_is_refused_naming_the_holder(sources, tmp_path):
    """R2-5: two real make_shards processes on the same --out and part at the same time."""
    out, started, go = tmp_path / "s", tmp_path / "started", tmp_path / "go"
    first = subprocess.Popen([sys.executable, str(WORKER), str(started), str(go), *_args(sources, out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + liveness(120)
        while not started.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists(), first.communicate()
        second = subprocess.run([sys.executable, "-m", "egovlpv2.cli.make_shards", *_args(sources, out)],
                                capture_output=True, text=True, timeout=liveness(120))
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and f"pid {first.pid} on " in lines[0], lines
        go.touch()
        stdout, stderr = first.communicate(timeout=liveness(120))
        assert first.returncode == 0, stderr
    finally:
        go.touch()
        if first.poll() is None:
            first.kill()
            first.wait()
    _sizes_match(out)
    assert not list(out.glob("*.tmp"))


def test_a_shard_file_that_differs_from_its_record_is_written_again(sources, tmp_path):
    """R2-5 keep rule: a record whose byte count (or hash) is not the file's is never kept by a rerun."""
    out = tmp_path / "s"
    manifest, ok = make_shards(_run(sources, out))
    assert ok
    clean = (out / "egoclip-000002.tar").read_bytes()
    (out / "egoclip-000002.tar").write_bytes(clean[: len(clean) // 2])  # what another writer's rename leaves
    again, ok = make_shards(_run(sources, out))
    assert ok and (out / "egoclip-000002.tar").read_bytes() == clean
    _sizes_match(out)


def test_parts_with_different_options_are_refused_and_delete_nothing(sources, tmp_path, capsys):
    """R2-10: part 0 with --limit 4, part 1 without it, then part 0 again."""
    out = tmp_path / "s"
    status, err = _cli(_args(sources, out, "--limit", "4", "--part", "0", "--parts", "2"), capsys)
    assert status == 0, err
    written = sorted(p.name for p in out.glob("*.tar"))
    assert written == ["egoclip-000000.tar"]
    status, err = _cli(_args(sources, out, "--part", "1", "--parts", "2"), capsys)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "--limit" in lines[0], err
    assert sorted(p.name for p in out.glob("*.tar")) == written  # part 0's shard is still there
    status, err = _cli(_args(sources, out, "--limit", "4", "--part", "0", "--parts", "2"), capsys)
    assert status == 0 and sorted(p.name for p in out.glob("*.tar")) == written, err
    status, err = _cli(_args(sources, out, "--limit", "4", "--part", "1", "--parts", "2"), capsys)
    assert status == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["total_samples"] == 4 and len(manifest["shards"]) == 2
    _sizes_match(out)
