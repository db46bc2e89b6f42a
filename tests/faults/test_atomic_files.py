"""Small files that a rerun or another process reads back: a crash mid-write must never leave them torn.

Written atomically (a temporary file renamed over the old one), a file that is rewritten leaves a reader
that opened the old one with the whole old content; a file rewritten in place would be truncated under it.
"""
import json
from pathlib import Path

import pytest

from egovlpv2.shards.egoclip_csv import write_egoclip
from egovlpv2.shards.make import ShardRun, make_shards
from egovlpv2.shards.transcode import EncodeOptions
from egovlpv2.eval.report import write_report
from egovlpv2.train.loop import _record_eval
from tests.helpers import egoclip_row, write_numbered_video


def _run(tmp_path, **kw):
    return make_shards(ShardRun(task="egoclip", csv=str(tmp_path / "e.csv"), videos=str(tmp_path / "v"),
                                out=str(tmp_path / "s"), workers=1, progress=False, max_failure_fraction=0.5,
                                encode=EncodeOptions(short_side=0), **kw))


@pytest.fixture
def egoclip_source(tmp_path):
    (tmp_path / "v").mkdir()
    write_numbered_video(tmp_path / "v" / "a.mp4", 25, 25.0)
    write_egoclip(tmp_path / "e.csv", [egoclip_row(i, "a", 0.1 * i, 0.1 * i + 0.5, dur=1.0) for i in range(3)])
    return tmp_path


def test_a_torn_sidecar_makes_the_rerun_redo_that_shard(egoclip_source):
    tmp_path = egoclip_source
    first, _ = _run(tmp_path)
    sidecar = tmp_path / "s" / "records" / "egoclip-000000.json"
    sidecar.write_text(sidecar.read_text()[:20])  # what a crash mid-write left behind
    second, ok = _run(tmp_path)
    assert ok and second["total_samples"] == first["total_samples"] == 3
    assert json.loads(sidecar.read_text())["samples"] == 3


def test_leftovers_of_a_killed_run_are_removed_on_the_next_run(egoclip_source):
    tmp_path = egoclip_source
    out = tmp_path / "s"
    out.mkdir()
    leftovers = [out / "egoclip-000007.tar.tmp", out / ".manifest.json.k3j2.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    _run(tmp_path)
    assert not any(p.exists() for p in leftovers)


def _rewrite_keeps_readers_whole(path: Path, rewrite) -> None:
    with open(path, "rb") as reader:
        old = path.read_bytes()
        rewrite()
        assert path.read_bytes() != old
        assert reader.read() == old  # the old file, whole: the new one was renamed over it


def test_manifest_and_sidecars_are_replaced_not_rewritten_in_place(egoclip_source):
    tmp_path = egoclip_source
    _run(tmp_path)
    _rewrite_keeps_readers_whole(tmp_path / "s" / "manifest.json", lambda: _run(tmp_path, limit=2))
    _rewrite_keeps_readers_whole(tmp_path / "s" / "records" / "egoclip-000000.json", lambda: _run(tmp_path, limit=1))


def test_results_and_eval_history_are_replaced_not_rewritten_in_place(tmp_path):
    results = tmp_path / "results" / "egomcq.json"
    write_report("egomcq", {"intra": 50.0, "inter": 90.0}, results)
    _rewrite_keeps_readers_whole(results, lambda: write_report("egomcq", {"intra": 51.0, "inter": 91.0}, results))
    history = tmp_path / "eval_egomcq.json"
    _record_eval(history, 100, {"intra": 50.0})
    _rewrite_keeps_readers_whole(history, lambda: _record_eval(history, 200, {"intra": 51.0}))
    assert set(json.loads(history.read_text())) == {"100", "200"}
