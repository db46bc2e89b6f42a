"""A user error through the real command line: one `error: ...` line on stderr, exit status 2, no traceback."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.helpers import liveness



@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    (root / "shards").mkdir()
    (root / "shards" / "manifest.json").write_text("{}")
    (root / "tokenizer").mkdir()
    (root / "model.pt").write_bytes(b"")  # only its existence is checked before the failure under test
    return root


def evaluate_args(root: Path, **change) -> list[str]:
    paths = {"checkpoint": root / "model.pt", "data": root / "shards", "tokenizer": root / "tokenizer", **change}
    return ["egovlpv2.cli.evaluate", "--task", "egomcq", *(f"--{k}={v}" for k, v in paths.items())]


CASES = {
    "bad recipe key": (lambda root: ["egovlpv2.cli.pretrain", "--config", "demo", "train.no_such_key=1"],
                       "unknown key 'no_such_key'"),
    "missing tokenizer directory": (lambda root: evaluate_args(root, tokenizer=root / "no_tokenizer"),
                                    "--tokenizer"),
    "missing shard directory": (lambda root: evaluate_args(root, data=root / "no_shards"), "no shard directory"),
    "missing checkpoint": (lambda root: evaluate_args(root, checkpoint=root / "no_model.pt"), "--checkpoint"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_one_line_and_exit_status_2(inputs, case, tmp_path):
    args, message = CASES[case]
    env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", *map(str, args(inputs))], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=liveness(300))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
