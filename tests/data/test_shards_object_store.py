"""Shards in real object stores on 127.0.0.1 (S3: moto; GCS: gcp-storage-emulator): make_shards --out
s3:// and gs://, inspection, the pre-training loader and its exact resume, and clear errors for a missing
bucket, a shard deleted mid-run and (S3 only: the GCS emulator checks no credentials) wrong credentials."""
import dataclasses
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from egovlpv2.cli import run_cli
from egovlpv2.data import build_pretrain_loader
from egovlpv2.shards.publish import write_shards_to
from egovlpv2.shards.make import ShardRun
from egovlpv2.shards.transcode import EncodeOptions
from egovlpv2.errors import UserError
from egovlpv2.storage import StorageError
from tests.helpers import REPO, liveness

pytestmark = pytest.mark.slow


def shard_tool(name: str, *args: str, capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the command ``name`` (egovlpv2.cli.<name>) run in this process."""
    module = importlib.import_module(f"egovlpv2.cli.{name}")
    capsys.readouterr()
    status = run_cli(module.main, list(args))
    out, err = capsys.readouterr()
    return status, out, err


def make_egoclip_shards(synthetic_dir: Path, out: str, staging: Path, capsys) -> tuple[int, str, str]:
    # The options of the local ``egoclip_shards`` fixture, so the uploaded shards must equal those bytes.
    return shard_tool("make_shards", "--task", "egoclip", "--csv", str(synthetic_dir / "egoclip.csv"), "--videos",
                      str(synthetic_dir / "videos"), "--out", out, "--workers", "1", "--samples-per-shard", "10",
                      "--short-side", "0", "--staging", str(staging), "--no-progress", capsys=capsys)


@pytest.fixture(scope="module")
def store_egoclip(object_store, synthetic_dir, egoclip_shards, tmp_path_factory):
    """The local ``egoclip_shards`` written once per store by make_shards --out <store>://shards/egoclip."""
    object_store.filesystem().mkdir("shards")
    url = f"{object_store.scheme}://shards/egoclip"
    run = ShardRun(task="egoclip", csv=str(synthetic_dir / "egoclip.csv"), videos=str(synthetic_dir / "videos"),
                   out=url, workers=1, samples_per_shard=10, progress=False, encode=EncodeOptions(short_side=0))
    _, _, ok, uploaded = write_shards_to(run, str(tmp_path_factory.mktemp(object_store.scheme) / "staging"))
    assert ok and uploaded == len(json.loads((egoclip_shards / "manifest.json").read_text())["shards"])
    return url


def test_make_shards_uploads_the_local_writers_shards_then_the_manifest(object_store, store_egoclip, egoclip_shards,
                                                                        synthetic_dir, tmp_path, capsys):
    fs = object_store.filesystem()
    local = json.loads((egoclip_shards / "manifest.json").read_text())
    remote = json.loads(fs.cat_file("shards/egoclip/manifest.json"))
    assert remote["options"]["out"] == store_egoclip and remote["shards"] == local["shards"]
    for entry in local["shards"]:
        assert fs.cat_file(f"shards/egoclip/{entry['name']}") == (egoclip_shards / entry["name"]).read_bytes()
    stamps = {p: fs.info(p)[object_store.stamp] for p in fs.find("shards/egoclip")}
    # A rerun (its staging gone) writes locally again but finds every shard uploaded and verified.
    staging = tmp_path / "staging"
    status, out, err = make_egoclip_shards(synthetic_dir, store_egoclip, staging, capsys)
    assert status == 0, err
    assert "uploaded" not in out and not staging.exists()
    fs.invalidate_cache()
    for path, stamp in stamps.items():
        if path.endswith(".tar") or "/records/" in path:  # the shards and their records, not the run's reports
            assert fs.info(path)[object_store.stamp] == stamp, path


def test_a_changed_remote_shard_is_uploaded_again(object_store, store_egoclip, synthetic_dir, egoclip_shards,
                                                  tmp_path, capsys):
    fs = object_store.filesystem()
    fs.copy("shards/egoclip", "shards/rewrite", recursive=True)
    fs.pipe("shards/rewrite/egoclip-000001.tar", b"truncated")  # e.g. an upload cut short by hand, or another plan
    status, out, err = make_egoclip_shards(synthetic_dir, f"{object_store.scheme}://shards/rewrite", tmp_path / "b",
                                           capsys)
    assert status == 0 and "uploaded 1 shards" in out, out + err
    assert fs.cat_file("shards/rewrite/egoclip-000001.tar") == (egoclip_shards / "egoclip-000001.tar").read_bytes()


def test_inspect_shards_reads_a_url(store_egoclip, egoclip_shards, capsys):
    status, out, err = shard_tool("inspect_shards", store_egoclip, "--no-progress", capsys=capsys)
    assert status == 0, out + err
    count = len(json.loads((egoclip_shards / "manifest.json").read_text())["shards"])
    assert f"48 samples in {count} shards" in out and "bad samples: 0" in out


def _take(loader, n=None):
    out = []
    for batch in loader:
        out.append((batch["sample_id"], batch["video"]))
        if n is not None and len(out) == n:
            break
    return out


def _same(a, b):
    assert [ids for ids, _ in a] == [ids for ids, _ in b]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))


def test_loader_from_a_store_gives_the_local_batches_and_resumes_exactly(data_cfg, store_egoclip):
    cfg = dataclasses.replace(data_cfg, shards=store_egoclip, num_workers=2, prefetch_factor=2)
    local = _take(build_pretrain_loader(dataclasses.replace(data_cfg, num_workers=2, prefetch_factor=2), 0, 1, 0))
    remote = build_pretrain_loader(cfg, 0, 1, 0)
    first = _take(remote, 5)
    state = remote.state_dict()
    rest = _take(build_pretrain_loader(cfg, 0, 1, 0, resume_state=state))
    assert len(local) == 12
    _same(first + rest, local)


def test_missing_bucket_is_a_clear_error(object_store, data_cfg, capsys):
    url = f"{object_store.scheme}://no-such-bucket/egoclip"
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        build_pretrain_loader(dataclasses.replace(data_cfg, shards=url), 0, 1, 0)
    status, _, err = shard_tool("inspect_shards", url, capsys=capsys)
    assert status == 2 and err.startswith("error:") and "bucket 'no-such-bucket' does not exist" in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_command_locations_are_refused(data_cfg, capsys):
    for shards in ("pipe:curl -s http://127.0.0.1/x.tar", "simplecache::s3://shards/egoclip", "ftp://host/x"):
        with pytest.raises(UserError):
            build_pretrain_loader(dataclasses.replace(data_cfg, shards=shards), 0, 1, 0)
    status, _, err = shard_tool("inspect_shards", "pipe:echo hello", capsys=capsys)
    assert status == 2 and "not accepted" in err


def test_a_shard_deleted_mid_run_stops_the_run_with_its_name(object_store, data_cfg, store_egoclip):
    fs, scheme = object_store.filesystem(), object_store.scheme
    for workers in (0, 2):
        fs.copy("shards/egoclip", f"shards/doomed{workers}", recursive=True)
        cfg = dataclasses.replace(data_cfg, shards=f"{scheme}://shards/doomed{workers}", num_workers=workers)
        batches = iter(build_pretrain_loader(cfg, 0, 1, 0))
        next(batches)
        for path in fs.glob(f"shards/doomed{workers}/*.tar"):
            fs.rm_file(path)
        with pytest.raises(StorageError) as caught:
            for _ in batches:
                pass
        # One line naming the shard, also when a DataLoader worker hit it.
        assert re.fullmatch(rf"cannot \w+ {scheme}://shards/doomed{workers}/egoclip-\d{{6}}\.tar: no such object",
                            str(caught.value)), str(caught.value)


def test_wrong_credentials_are_a_clear_error(s3_auth_server, egoclip_shards):
    """On a server that checks signatures: the right key reads the shards, a wrong secret is refused."""
    fs = s3_auth_server.filesystem()
    fs.mkdir("private")
    for path in egoclip_shards.rglob("*"):
        if path.is_file():
            fs.pipe(f"private/egoclip/{path.relative_to(egoclip_shards).as_posix()}", path.read_bytes())
    # Fresh processes: credentials are read from the environment when a process first reaches the store.
    command = [sys.executable, str(REPO / "shard_tools" / "inspect_shards.py"), "s3://private/egoclip", "--no-decode",
               "--no-progress"]
    right = dict(os.environ, **s3_auth_server.env())
    ok = subprocess.run(command, env=right, capture_output=True, text=True, timeout=liveness(300))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong = subprocess.run(command, env=dict(right, AWS_SECRET_ACCESS_KEY="not-the-secret"), capture_output=True,
                           text=True, timeout=liveness(300))
    assert wrong.returncode == 2 and "access denied" in wrong.stderr and "Traceback" not in wrong.stderr, wrong.stderr
