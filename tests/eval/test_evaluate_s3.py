"""EgoMCQ evaluated from shards on an S3-compatible server (moto on 127.0.0.1) scores exactly as from disk."""
import json

import pytest

from egovlpv2.shards.publish import write_shards_to
from egovlpv2.shards.tasks import ShardRun
from egovlpv2.shards.transcode import EncodeOptions
from egovlpv2.errors import UserError
from tests.eval import synthetic_benchmarks as synth

pytestmark = pytest.mark.slow


def evaluate(bench, shards: str, out, workers: int) -> dict:
    return synth.evaluate_bench(bench, "egomcq", shards, bench["ours"], out, "--num-workers", str(workers))


def test_egomcq_from_s3_scores_as_from_disk(bench, s3_server, tmp_path):
    root, local = bench["root"], bench["mcq"]["shards"]
    s3_server.filesystem().mkdir("evaluation")
    run = ShardRun(task="egomcq", videos=str(root / "videos_mcq"), out="s3://evaluation/egomcq", workers=1,
                   json=str(root / "egomcq.json"), progress=False,
                   encode=EncodeOptions(short_side=0, gop=4, preset="ultrafast"))
    manifest, _, ok, uploaded = write_shards_to(run, str(tmp_path / "staging"))
    assert ok and uploaded == len(manifest["shards"])
    assert json.loads((local / "manifest.json").read_text())["shards"] == manifest["shards"]
    from_disk = evaluate(bench, str(local), tmp_path / "disk.json", workers=0)
    from_s3 = evaluate(bench, "s3://evaluation/egomcq", tmp_path / "s3.json", workers=2)
    assert from_s3 == from_disk and from_s3["num_questions"] == {"inter": 3, "intra": 3}
    with pytest.raises(UserError, match="bucket 'missing-bucket' does not exist"):
        evaluate(bench, "s3://missing-bucket/egomcq", tmp_path / "x.json", workers=0)
