"""EgoMCQ evaluated from shards in a real object store on 127.0.0.1 (S3: moto; GCS: gcp-storage-emulator)
scores exactly as from disk."""
import json

import pytest
import torch

import egovlpv2
from egovlpv2.shards.publish import write_shards_to
from egovlpv2.shards.tasks import ShardRun
from egovlpv2.shards.transcode import EncodeOptions
from egovlpv2.errors import UserError
from tests.eval import synthetic_benchmarks as synth

pytestmark = pytest.mark.slow


def evaluate(shards: str, checkpoint, tokenizer, out, workers: int) -> dict:
    from egovlpv2.cli.evaluate import evaluate

    return synth.run_isolated(evaluate, ["--task", "egomcq", "--checkpoint", str(checkpoint), "--data", shards,
                                     "--tokenizer", str(tokenizer), "--model", "egovlpv2-tiny", "--num-frames", "2",
                                     "--batch-size", "5", "--num-workers", str(workers), "--out", str(out)])


def test_egomcq_from_a_store_scores_as_from_disk(object_store, tmp_path):
    torch.manual_seed(0)
    model = egovlpv2.create_model("egovlpv2-tiny", num_frames=2).eval()
    checkpoint = tmp_path / "model.pt"
    torch.save(model.state_dict(), checkpoint)
    tokenizer = synth.make_tokenizer(tmp_path)
    local = synth.make_egomcq(tmp_path)["shards"]
    object_store.filesystem().mkdir("evaluation")
    url = f"{object_store.scheme}://evaluation/egomcq"
    run = ShardRun(task="egomcq", videos=str(tmp_path / "videos_mcq"), out=url, workers=1,
                   json=str(tmp_path / "egomcq.json"), progress=False,
                   encode=EncodeOptions(short_side=0, gop=4, preset="ultrafast"))
    manifest, _, ok, uploaded = write_shards_to(run, str(tmp_path / "staging"))
    assert ok and uploaded == len(manifest["shards"])
    assert json.loads((local / "manifest.json").read_text())["shards"] == manifest["shards"]
    from_disk = evaluate(str(local), checkpoint, tokenizer, tmp_path / "disk.json", workers=0)
    from_store = evaluate(url, checkpoint, tokenizer, tmp_path / "store.json", workers=2)
    assert from_store == from_disk and from_store["num_questions"] == {"inter": 3, "intra": 3}
    with pytest.raises(UserError, match="bucket 'missing-bucket' does not exist"):
        evaluate(f"{object_store.scheme}://missing-bucket/egomcq", checkpoint, tokenizer, tmp_path / "x.json",
                 workers=0)
