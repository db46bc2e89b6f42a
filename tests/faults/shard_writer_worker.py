"""make_shards (the command line) whose first clip waits for a go file: a writer caught mid-shard.

Usage: shard_writer_worker.py STARTED_FILE GO_FILE MAKE_SHARDS_ARGS...
It creates STARTED_FILE when it reaches its first clip, then waits (at most liveness(600) s) for GO_FILE.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from egovlpv2.cli import make_shards, run_cli  # noqa: E402
from egovlpv2.shards import writer  # noqa: E402
from tests.helpers import liveness  # noqa: E402


def main() -> int:
    started, go, args = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    real_cut = writer.cut_clip

    def cut_clip(*a, **kw):
        started.touch()
        deadline = time.monotonic() + liveness(600)
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return real_cut(*a, **kw)

    writer.cut_clip = cut_clip
    return run_cli(make_shards.main, args)


if __name__ == "__main__":
    sys.exit(main())
