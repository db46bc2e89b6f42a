"""SIGTERM to the whole process group (docs/faults.md #7), as SLURM, torchrun and the DeepSpeed launcher send it:
the DataLoader workers get it too, and must leave the decision (save, then exit) to the main process."""
import signal
from pathlib import Path

import pytest

from tests.faults.ranks import ZERO2, results, run, start, wait_for
from tests.train.test_pretrain_e2e import overrides, shards  # noqa: F401 - the synthetic-shards fixture

WORKER = Path(__file__).with_name("slow_pretrain_worker.py")
KEYS = ("step", "loss", "egonce", "mlm", "vtm", "grad_norm")
EXTRA = {"data.num_workers": 1, "eval.at_end": "false", "checkpoint.every_steps": 1000, "train.precision": "fp32",
         "logging.every_steps": 1}


@pytest.mark.slow
def test_sigterm_to_the_process_group_saves_and_resumes_bitwise(shards, tmp_path):  # noqa: F811
    straight, signalled = tmp_path / "straight", tmp_path / "signalled"
    run(WORKER, [0, "demo", ZERO2, *overrides(shards, straight, 6, **EXTRA)], tmp_path / "logs", timeout=300)
    job = start(WORKER, [1.5, "demo", ZERO2, *overrides(shards, signalled, 6, **EXTRA)], tmp_path / "logs")
    wait_for(signalled / "started_rank0", timeout=240)
    wait_for(signalled / "started_rank1", timeout=60)
    job.signal_group(signal.SIGTERM)  # kill -TERM -- -PGID: both ranks and their loader workers
    codes = job.wait(timeout=120)
    assert codes == [0, 0], f"{codes}\n{job.output()}"
    assert "is killed by signal" not in job.output()
    first = [results(signalled, rank)[0] for rank in (0, 1)]
    stop_step = first[0]["step"]
    assert 1 <= stop_step < 6 and all(not r["finished"] and r["step"] == stop_step for r in first)
    assert (signalled / "checkpoints" / "latest").read_text() == f"step{stop_step:08d}"
    run(WORKER, [0, "demo", ZERO2, *overrides(shards, signalled, 6, **EXTRA)], tmp_path / "logs", timeout=300)
    for rank in (0, 1):
        (full,) = results(straight, rank)
        stopped, rest = results(signalled, rank)
        assert rest["finished"] and [h["step"] for h in rest["history"]] == list(range(stop_step + 1, 7))
        assert [[h[k] for k in KEYS] for h in stopped["history"] + rest["history"]] == \
            [[h[k] for k in KEYS] for h in full["history"]]
