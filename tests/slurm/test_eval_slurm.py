"""Evaluation as a 2-node job through launch/submit.py (launch/evaluate.py on every task)."""
from __future__ import annotations

import json

import pytest

from tests.helpers import run_submit
from tests.slurm.slurm_helpers import job_id_of, logs_of, wait_for_job

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_egomcq_evaluation_job_on_two_nodes(slurm_cluster, tmp_path):
    import torch

    import egovlpv2
    from tests.eval import synthetic_benchmarks as synth

    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    torch.save(egovlpv2.create_model("egovlpv2-tiny", num_frames=4).state_dict(), checkpoint)
    tokenizer = synth.make_tokenizer(tmp_path)
    shards = synth.make_egomcq(tmp_path)["shards"]
    args = ["--task", "egomcq", "--checkpoint", str(checkpoint), "--data", str(shards), "--tokenizer", str(tokenizer),
            "--model", "egovlpv2-tiny", "--num-frames", "4", "--batch-size", "5", "--num-workers", "0"]

    run_dir = tmp_path / "eval-run"
    printed = run_submit("--entry", "eval", "--nodes", "2", "--gpus-per-node", "0", "--time", "5",
                         "--output-dir", str(run_dir), *args, "--out", str(run_dir / "egomcq.json"),
                         env={"OMP_NUM_THREADS": "1"})
    job_id = job_id_of(printed)
    state = wait_for_job(job_id, run_dir, timeout=180)
    assert state == "COMPLETED", logs_of(run_dir, job_id)
    on_cluster = json.loads((run_dir / "egomcq.json").read_text())["results"]
    # the two ranks split the six questions and reassemble every one exactly once
    assert on_cluster["num_questions"] == {"inter": 3, "intra": 3} and on_cluster["missing"] == 0
    assert set(on_cluster) >= {"dual", "vtm", "ensemble"}
    logs = logs_of(run_dir, job_id)
    assert "rank 0/2" in logs and "rank 1/2" in logs
    assert (run_dir / "egomcq.md").is_file()
