import os
import subprocess
import sys
from pathlib import Path

import pytest

from egovlpv2.dist.env import free_port

REPO = Path(__file__).resolve().parents[2]


def torchrun(script, args, nproc=2, timeout=240, env_extra=None, expect_failure=False):
    """Run ``script`` on ``nproc`` real CPU ranks with torchrun on a free port; fail with its output."""
    env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **(env_extra or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(script), *map(str, args)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if expect_failure:
        assert proc.returncode != 0, "the run was expected to die"
    elif proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc
