"""Pre-training on 2 real CPU ranks from shards on an S3-compatible server (moto on 127.0.0.1), written there
by make_shards.py --out s3://: killed mid-epoch and resumed, it gives the uninterrupted run's losses, and
the end-of-run EgoMCQ evaluation reads its shards from the server too."""
import pytest

from egovlpv2.cli import make_shards, run_cli
from egovlpv2.shards.synthetic import SyntheticSpec, make_synthetic
from tests.train.conftest import torchrun
from tests.train.test_pretrain_e2e import WORKER, results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3_shards(s3_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root / "src", SyntheticSpec(videos=6, clips_per_video=8, mcq_videos=5, mcq_questions=6, size=64),
                   progress=False)
    s3_server.filesystem().mkdir("pretrain")
    for task, flag, path in (("egoclip", "--csv", "egoclip.csv"), ("egomcq", "--json", "egomcq.json")):
        assert run_cli(make_shards.main, [
            "--task", task, flag, str(root / "src" / path), "--videos", str(root / "src" / "videos"),
            "--out", f"s3://pretrain/{task}", "--staging", str(root / f"staging-{task}"), "--workers", "1",
            "--samples-per-shard", "16", "--no-progress"]) == 0
    return root


def overrides(root, out, steps: int, **extra) -> list[str]:
    items = {"data.shards": "s3://pretrain/egoclip", "data.tokenizer": root / "src" / "tokenizer",
             "eval.egomcq_shards": "s3://pretrain/egomcq", "train.output_dir": out, "train.max_steps": steps,
             "data.batch_size": 4, "data.num_workers": 2, "data.shuffle_buffer": 8, "optim.lr": 1e-3,
             "optim.warmup_fraction": 0.0, "checkpoint.every_steps": 3, "logging.every_steps": 2,
             "logging.progress_bar": False, "eval.every_steps": 1000, "train.precision": "fp32", **extra}
    return [f"{k}={v}" for k, v in items.items()]


def test_killed_run_on_s3_shards_resumes_to_the_uninterrupted_losses(s3_shards, tmp_path):
    """Rank 1 is SIGKILLed in step 5 (mid-epoch: 6 batches an epoch); the checkpoint of step 3 resumes it."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # Reads from the local server retry with backoff when it is slow to answer: a wider bound than on disk.
    torchrun(WORKER, ["demo", "zero2", *overrides(s3_shards, straight, 5)], timeout=480)
    torchrun(WORKER, ["demo", "zero2", *overrides(s3_shards, killed, 5, **{"eval.at_end": "false"})],
             env_extra={"PRETRAIN_WORKER_KILL_AT_BATCH": "5"}, expect_failure=True, timeout=480)
    assert (killed / "checkpoints" / "latest").read_text().strip() == "step00000003"
    assert not results(killed, 0)  # it died before writing any result
    torchrun(WORKER, ["demo", "zero2", *overrides(s3_shards, killed, 5, **{"eval.at_end": "false"})], timeout=480)
    keys = ("step", "loss", "egonce", "mlm", "vtm", "grad_norm")
    for rank in (0, 1):
        (full,) = results(straight, rank)
        (resumed,) = results(killed, rank)
        assert [h["step"] for h in resumed["history"]] == [4, 5]  # continued from the step-3 checkpoint
        assert [[h[k] for k in keys] for h in resumed["history"]] == [[h[k] for k in keys] for h in full["history"][3:]]
    final = results(straight, 0)[0]["evaluations"]["5"]  # EgoMCQ from s3://pretrain/egomcq
    assert set(final) == {f"{k}_{s}" for k in ("dual", "vtm", "ensemble") for s in ("inter", "intra")}
    assert all(0 <= v <= 100 for v in final.values())
