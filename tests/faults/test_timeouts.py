"""Timeouts that agree (docs/faults.md #9): the loader's batch wait covers a batch's decode bounds and a resume's
replay; a decode that timed out does not hold the process at exit."""
import subprocess
import sys
import textwrap
import time

import pytest

from egovlpv2.config import ConfigError
from egovlpv2.data.config import DataConfig
from egovlpv2.data.pipeline import loader_timeout_s
from egovlpv2.train.config import load_pretrain_config
from tests.helpers import REPO, liveness


def test_batch_timeout_covers_every_decode_of_a_batch_and_the_replay():
    cfg = DataConfig(batch_size=32, decode_timeout_s=10.0)
    fresh = loader_timeout_s(cfg)
    assert fresh > 2 * 32 * 10.0  # anchor and partner of every pair may each use their whole decode bound
    assert loader_timeout_s(DataConfig(batch_size=32, decode_timeout_s=20.0)) > fresh + 32 * 10.0
    late = loader_timeout_s(cfg, replay_pairs=200_000)  # resumed near the end of a large epoch
    assert late > fresh + 200_000 * 1e-3  # at least a millisecond per replayed pair on top


def test_a_timed_out_decode_does_not_hold_the_process_at_exit():
    bound = liveness(10)
    script = textwrap.dedent(f"""
        import time
        from egovlpv2.data.video_io import FrameDecoder, SampleError
        decoder = FrameDecoder(timeout_s=0.2)
        decoder._decode = lambda *args: time.sleep({3 * bound})  # a decode that hangs
        try:
            decoder("mp4", b"", lambda n: [0])
        except SampleError as exc:
            print(exc.reason)
    """)
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=liveness(60))
    assert proc.stdout.strip() == "decode_timeout", proc.stderr
    assert time.monotonic() - began < bound  # not the 3 * bound the stuck thread would be waited for


def test_fault_timeouts_are_recipe_keys():
    cfg = load_pretrain_config("demo", ["train.collective_timeout_s=30", "train.peer_timeout_s=5",
                                        "train.stop_timeout_s=20", "train.max_nonfinite_steps=2"])
    assert (cfg.train.collective_timeout_s, cfg.train.peer_timeout_s, cfg.train.stop_timeout_s,
            cfg.train.max_nonfinite_steps) == (30, 5, 20, 2)
    with pytest.raises(ConfigError, match="peer_timeout_s"):
        load_pretrain_config("demo", ["train.peer_timeout_s=0"])
