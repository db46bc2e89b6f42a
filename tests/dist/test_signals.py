"""DataLoader workers ignore stop signals, yet never keep their process from exiting."""
import subprocess
import sys
import textwrap
import time

from tests.helpers import REPO, liveness

ABANDONED_LOADER = textwrap.dedent("""
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    from egovlpv2.dist.signals import ignore_stop_signals

    class Endless(IterableDataset):
        def __iter__(self):
            while True:
                yield torch.zeros(1)

    loader = iter(DataLoader(Endless(), batch_size=None, num_workers=2, worker_init_fn=ignore_stop_signals))
    next(loader)
    kept = loader  # still referenced at exit, as an exception's traceback keeps a loader mid-epoch
    print("exiting", flush=True)
""")


def test_a_process_exits_although_its_loader_workers_ignore_sigterm():
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", ABANDONED_LOADER], cwd=REPO, capture_output=True, text=True,
                          timeout=liveness(120))
    assert proc.returncode == 0 and "exiting" in proc.stdout and "Traceback" not in proc.stderr, proc.stderr
    assert time.monotonic() - began < liveness(60)
