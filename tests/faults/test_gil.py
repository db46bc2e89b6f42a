"""A rank that holds the GIL in one long C call is alive, not dead (docs/faults.md R2-13): its beater
process keeps its heartbeat going, so the run survives a call longer than ``train.peer_timeout_s``."""
from pathlib import Path

import pytest

from tests.faults.ranks import ZERO2, results, run
from tests.helpers import liveness

WORKER = Path(__file__).with_name("fault_worker.py")
PEER_TIMEOUT = 4


@pytest.mark.slow
def test_a_rank_holding_the_gil_longer_than_the_peer_timeout_is_not_declared_dead(tmp_path):
    out = tmp_path / "run"
    job = run(WORKER, [ZERO2, out, 4, "--peer-timeout", PEER_TIMEOUT, "--gil-hold-at-call", 3,
                       "--gil-hold-s", 3 * PEER_TIMEOUT], out / "logs", timeout=liveness(240))
    assert "blocked holding the GIL" not in job.output()
    assert [r["finished"] for rank in (0, 1) for r in results(out, rank)] == [True, True]
