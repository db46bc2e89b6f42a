"""What many test folders share: the checkout's root, and liveness bounds that scale with one factor."""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Every wall-clock bound in the tests is a liveness bound (it catches hangs, never slowness) and is
# multiplied by this factor; raise it on a machine that is slow or shared with other jobs.
TIME_FACTOR = float(os.environ.get("EGOVLPV2_TEST_TIME_FACTOR", "1"))


def liveness(seconds: float) -> float:
    """A wall-clock bound for something that takes far less on an idle machine, scaled by TIME_FACTOR."""
    return seconds * TIME_FACTOR
