"""Shard locations: which are accepted, and streaming from a real HTTP server on 127.0.0.1 that fails
transiently (503s, a connection dropped mid-body) or for good."""
import json
import logging

import pytest

from egovlpv2 import storage
from egovlpv2.data.manifest import read_manifest
from egovlpv2.data.stream import read_tar
from egovlpv2.errors import UserError
from egovlpv2.storage import StorageError, check_location, join
from tests.http_server import FlakyServer, make_tar


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr(storage, "BACKOFF_S", 0.01)
    monkeypatch.setattr(storage, "STREAM_BLOCK", 16 << 10)  # several ranged reads per shard


def test_locations_that_could_run_commands_are_refused():
    for loc in ("pipe:curl http://x | cat", "simplecache::s3://b/p", "ftp://host/p", "memory://x", ""):
        with pytest.raises(UserError):
            check_location(loc)
    for loc in ("shards/egoclip", "/data/shards", "s3://bucket/prefix", "gs://b/p", "https://h/p", "file:///d"):
        assert check_location(loc) == loc
    assert join("s3://bucket/prefix/", "a.tar") == "s3://bucket/prefix/a.tar"
    assert join("file:///data/shards", "a.tar") == "/data/shards/a.tar"
    for name in ("../a.tar", "sub/a.tar", "pipe:ls", "s3://other/a.tar", ".."):
        with pytest.raises(UserError):
            join("s3://bucket/prefix", name)


def test_a_manifest_cannot_point_a_reader_at_a_command(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 2, "task": "egoclip", "shards": [
        {"name": "pipe:touch pwned", "samples": 1, "bytes": 1}], "total_samples": 1}))
    manifest = read_manifest(str(tmp_path))
    with pytest.raises(UserError, match="not a plain file name"):
        list(read_tar(join(str(tmp_path), manifest["shards"][0]["name"])))
    assert not (tmp_path / "pwned").exists()


def test_stream_survives_503s_and_a_dropped_connection(fast_backoff, caplog, tmp_path):
    data = make_tar()
    (tmp_path / "a.tar").write_bytes(data)
    expected = [(s["__key__"], s["mp4"]) for s in read_tar(str(tmp_path / "a.tar"))]
    assert len(expected) == 40
    with FlakyServer({"/shards/a.tar": data}, ["ok", "503", "drop", "503"]) as server, \
            caplog.at_level(logging.WARNING, logger="egovlpv2.storage"):
        got = [(s["__key__"], s["mp4"]) for s in read_tar(f"{server.url}/shards/a.tar")]
    assert got == expected
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 3 and all(f"{server.url}/shards/a.tar" in m for m in retries), retries
    assert all(" at byte 0 " not in m for m in retries), retries  # broke mid-stream, resumed where it broke


def test_a_shard_that_keeps_failing_is_an_error_naming_it(fast_backoff):
    with FlakyServer({"/a.tar": make_tar(2)}, ["503"] * 100) as server:
        with pytest.raises(StorageError, match=rf"{server.url}/a.tar.*after {storage.ATTEMPTS} attempts"):
            list(read_tar(f"{server.url}/a.tar"))
        with pytest.raises(StorageError, match="no such object"):
            list(read_tar(f"{server.url}/missing.tar"))
        server.script, server.gets = ["403"] * 100, 0
        with pytest.raises(StorageError, match="403"):
            list(read_tar(f"{server.url}/a.tar"))
        assert server.gets == 1  # refused: not retried

