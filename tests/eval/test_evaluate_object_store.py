"""EgoMCQ evaluated from shards in a real object store on 127.0.0.1 (S3: moto; GCS: gcp-storage-emulator)
scores exactly as from disk."""
import json

import pytest

from egovlpv2.shards.publish import write_shards_to
from egovlpv2.shards.make import ShardRun
from egovlpv2.shards.transcode import EncodeOptions
from egovlpv2.errors import UserError
from tests.eval import synthetic_benchmarks as synth

pytestmark = pytest.mark.slow


def evaluate(bench, shards: str, out, workers: int) -> dict:
    return synth.evaluate_bench(bench, "egomcq", shards, bench["ours"], out, "--num-workers", str(workers))


def test_egomcq_from_a_store_scores_as_from_disk(bench, object_store, tmp_path):
    root, local = bench["root"], bench["mcq"]["shards"]
    object_store.filesystem().mkdir("evaluation")
    url = f"{object_store.scheme}://evaluation/egomcq"
    run = ShardRun(task="egomcq", videos=str(root / "videos_mcq"), out=url, workers=1,
                   json=str(root / "egomcq.json"), progress=False,
                   encode=EncodeOptions(short_side=0, gop=4, preset="ultrafast"))
    manifest, _, ok, uploaded = write_shards_to(run, str(tmp_path / "staging"))
    assert ok and uploaded == len(manifest["shards"])
    assert json.loads((local / "manifest.json").read_text())["shards"] == manifest["shards"]
    from_disk = evaluate(bench, str(local), tmp_path / "disk.json", workers=0)
    from_store = evaluate(bench, url, tmp_path / "store.json", workers=2)
    assert from_store == from_disk and from_store["num_questions"] == {"inter": 3, "intra": 3}
    with pytest.raises(UserError, match="bucket 'missing-bucket' does not exist"):
        evaluate(bench, f"{object_store.scheme}://missing-bucket/egomcq", tmp_path / "x.json", workers=0)
