"""make_shards in parts (one per cluster node): the same shards, byte for byte, as one run; restarts keep work."""
import json

import pytest

from egovlpv2.shards.make import ShardRun, make_shards
from egovlpv2.shards.transcode import EncodeOptions

pytestmark = pytest.mark.slow


def _run(synthetic_dir, out, part=0, parts=1):
    return make_shards(ShardRun(task="egoclip", csv=str(synthetic_dir / "egoclip.csv"),
                                videos=str(synthetic_dir / "videos"), out=str(out), workers=1, samples_per_shard=6,
                                progress=False, part=part, parts=parts, encode=EncodeOptions(short_side=0)))


def _shard_bytes(out, manifest):
    return {s["name"]: (out / s["name"]).read_bytes() for s in manifest["shards"]}


def test_parts_write_the_same_shards_as_one_run(synthetic_dir, tmp_path):
    whole, ok = _run(synthetic_dir, tmp_path / "whole")
    assert ok and whole["total_samples"] == 48 and len(whole["shards"]) >= 6
    for parts in (2, 3):
        out = tmp_path / f"parts{parts}"
        for part in range(parts - 1):
            manifest, _ = _run(synthetic_dir, out, part, parts)
            assert manifest is None and not (out / "manifest.json").exists()  # other parts unfinished
        manifest, ok = _run(synthetic_dir, out, parts - 1, parts)
        assert ok and {k: v for k, v in manifest.items() if k not in ("options", "source_s_per_cpu_s")} == \
            {k: v for k, v in whole.items() if k not in ("options", "source_s_per_cpu_s")}
        assert _shard_bytes(out, manifest) == _shard_bytes(tmp_path / "whole", whole)
        assert json.loads((out / "summary.json").read_text())["rows_written"] == 48


def test_a_restarted_part_redoes_only_its_unfinished_shards(synthetic_dir, tmp_path):
    out = tmp_path / "s"
    _run(synthetic_dir, out, 0, 2)
    manifest, _ = _run(synthetic_dir, out, 1, 2)
    names = [s["name"] for s in manifest["shards"]]
    stamps = {n: (out / n).stat().st_mtime_ns for n in names}
    lost = names[2]  # written by part 0 (every second shard from the first)
    (out / lost).unlink()
    (out / "records" / lost.replace(".tar", ".json")).unlink()
    again, ok = _run(synthetic_dir, out, 0, 2)
    timing = "source_s_per_cpu_s"  # the rewritten shard's CPU time differs
    assert ok and {**again, timing: None} == {**manifest, timing: None}  # the restarted part finishes and merges
    assert all((out / n).stat().st_mtime_ns == stamps[n] for n in names if n != lost)
    assert (out / lost).is_file()
