"""Pre-training on 2 real CPU ranks from shards in a real object store on 127.0.0.1 (S3: moto; GCS:
gcp-storage-emulator), written there by make_shards.py --out s3:// or gs://: killed mid-epoch and resumed,
it gives the uninterrupted run's losses, and the end-of-run EgoMCQ evaluation reads its shards from the
store too."""
import pytest

from egovlpv2.cli import make_shards, run_cli
from egovlpv2.shards.synthetic import SyntheticSpec, make_synthetic
from tests.helpers import torchrun
from tests.train.test_pretrain_e2e import WORKER, results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synthetic_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, SyntheticSpec(videos=6, clips_per_video=8, mcq_videos=5, mcq_questions=6, size=64),
                   progress=False)
    return root


@pytest.fixture(scope="module")
def store_shards(object_store, synthetic_source, tmp_path_factory):
    """(the synthetic source, the store's URL prefix of its egoclip/ and egomcq/ shards written there)."""
    object_store.filesystem().mkdir("pretrain")
    staging = tmp_path_factory.mktemp(f"staging-{object_store.scheme}")
    for task, flag, path in (("egoclip", "--csv", "egoclip.csv"), ("egomcq", "--json", "egomcq.json")):
        assert run_cli(make_shards.main, [
            "--task", task, flag, str(synthetic_source / path), "--videos", str(synthetic_source / "videos"),
            "--out", f"{object_store.scheme}://pretrain/{task}", "--staging", str(staging / task), "--workers", "1",
            "--samples-per-shard", "16", "--no-progress"]) == 0
    return synthetic_source, f"{object_store.scheme}://pretrain"


def overrides(store_shards, out, steps: int, **extra) -> list[str]:
    source, prefix = store_shards
    items = {"data.shards": f"{prefix}/egoclip", "data.tokenizer": source / "tokenizer",
             "eval.egomcq_shards": f"{prefix}/egomcq", "train.output_dir": out, "train.max_steps": steps,
             "data.batch_size": 4, "data.num_workers": 2, "data.shuffle_buffer": 8, "optim.lr": 1e-3,
             "optim.warmup_fraction": 0.0, "checkpoint.every_steps": 3, "logging.every_steps": 2,
             "logging.progress_bar": False, "eval.every_steps": 1000, "train.precision": "fp32", **extra}
    return [f"{k}={v}" for k, v in items.items()]


def test_killed_run_on_store_shards_resumes_to_the_uninterrupted_losses(store_shards, tmp_path):
    """Rank 1 is SIGKILLed in step 5 (mid-epoch: 6 batches an epoch); the checkpoint of step 3 resumes it."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # Reads from the local server retry with backoff when it is slow to answer: a wider bound than on disk.
    torchrun(WORKER, ["demo", "zero2", *overrides(store_shards, straight, 5)], timeout=480)
    torchrun(WORKER, ["demo", "zero2", *overrides(store_shards, killed, 5, **{"eval.at_end": "false"})],
             env_extra={"PRETRAIN_WORKER_KILL_AT_BATCH": "5"}, expect_failure=True, timeout=480)
    assert (killed / "checkpoints" / "latest").read_text().strip() == "step00000003"
    assert not results(killed, 0)  # it died before writing any result
    torchrun(WORKER, ["demo", "zero2", *overrides(store_shards, killed, 5, **{"eval.at_end": "false"})],
             timeout=480)
    keys = ("step", "loss", "egonce", "mlm", "vtm", "grad_norm")
    for rank in (0, 1):
        (full,) = results(straight, rank)
        (resumed,) = results(killed, rank)
        assert [h["step"] for h in resumed["history"]] == [4, 5]  # continued from the step-3 checkpoint
        assert [[h[k] for k in keys] for h in resumed["history"]] == [[h[k] for k in keys] for h in full["history"][3:]]
    final = results(straight, 0)[0]["evaluations"]["5"]  # EgoMCQ from the store's pretrain/egomcq
    assert set(final) == {f"{k}_{s}" for k in ("dual", "vtm", "ensemble") for s in ("inter", "intra")}
    assert all(0 <= v <= 100 for v in final.values())
