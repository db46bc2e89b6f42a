"""tests/train/pretrain_worker.py with each optimizer step slowed by --step-sleep seconds (room for an outside
signal to land mid-run) and a marker <output_dir>/started_rank<r> written at the first step.

Usage: slow_pretrain_worker.py STEP_SLEEP RECIPE DS_CONFIG [overrides...]
"""
import os
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1] / "train")]

import egovlpv2.train.pretrain as pretrain  # noqa: E402
import pretrain_worker  # noqa: E402

STEP_SLEEP = float(sys.argv.pop(1))
_accumulate = pretrain.accumulate_step


def slow_step(engine, micro_batches, step):
    out = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("train.output_dir="))
    (Path(out) / f"started_rank{os.environ['RANK']}").touch()
    time.sleep(STEP_SLEEP)
    return _accumulate(engine, micro_batches, step)


pretrain.accumulate_step = slow_step

if __name__ == "__main__":
    pretrain_worker.main()
