import pytest

from tests.faults.ranks import ZERO2, run
from tests.helpers import REPO

WORKER = REPO / "tests" / "faults" / "fault_worker.py"


@pytest.fixture(scope="session")
def straight(tmp_path_factory):
    """The uninterrupted 8-step toy run that faulted-then-resumed runs are compared with, bitwise."""
    out = tmp_path_factory.mktemp("straight")
    run(WORKER, [ZERO2, out, 8], out / "logs")
    return out
