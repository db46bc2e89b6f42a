import os

from contextlib import contextmanager

import pytest
import torch

from egovlpv2.shards.make import ShardRun, make_shards
from egovlpv2.shards.synthetic import SyntheticSpec, make_synthetic
from egovlpv2.shards.transcode import EncodeOptions
from tests import gcs_server as gcs, s3_server as s3

AWS_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
GOOGLE_VARIABLES = ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG")
# gcsfs reads this once, when first imported: the GCS emulator serves no storage-control gRPC API, and the
# lookup that calls it would wait a minute per bucket before falling back (see tests/gcs_server.py).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


@contextmanager
def environment(set_to: dict[str, str], removed=()):
    """This process's environment (inherited by every process the tests start) with ``set_to`` and without
    ``removed``, restored afterwards."""
    saved = {k: os.environ.get(k) for k in (*set_to, *removed)}
    for name in removed:
        os.environ.pop(name, None)
    os.environ.update(set_to)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """An S3-compatible server on 127.0.0.1, with this session's AWS variables pointing at it (so every
    process the tests start, torchrun ranks included, reaches it the standard way); stopped afterwards."""
    proc, server = s3.start_server()
    empty = tmp_path_factory.mktemp("aws")  # no profile or config of the machine's user may leak in
    try:
        with environment(server.env(AWS_CONFIG_FILE=str(empty / "config"),
                                    AWS_SHARED_CREDENTIALS_FILE=str(empty / "credentials")), AWS_VARIABLES):
            yield server
    finally:
        s3.stop_server(proc)


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """A GCS server (the JSON API) on 127.0.0.1, reached through STORAGE_EMULATOR_HOST by this process and
    every process the tests start; no credentials or gcloud configuration of the machine's user leak in."""
    proc, server = gcs.start_server()
    empty = tmp_path_factory.mktemp("gcloud")
    try:
        with environment(server.env(CLOUDSDK_CONFIG=str(empty)), GOOGLE_VARIABLES):
            yield server
    finally:
        gcs.stop_server(proc)


@pytest.fixture(scope="session", params=["s3", "gs"])
def object_store(request):
    """Each real object store in turn (moto for s3://, gcp-storage-emulator for gs://): ``scheme``,
    ``filesystem()``, ``env()`` and ``stamp`` (the info field a rewrite changes)."""
    return request.getfixturevalue({"s3": "s3_server", "gs": "gcs_server"}[request.param])


@pytest.fixture(scope="session")
def s3_auth_server():
    """A second S3-compatible server that checks credentials (a known key with an s3:* policy)."""
    proc, server = s3.start_server(auth=True)
    try:
        yield server
    finally:
        s3.stop_server(proc)


@pytest.fixture
def one_thread():
    """The single-process references run tiny ops: one thread avoids oversubscribing a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The synthetic data set and shards of the loader tests, also read by the shard-writing tests.
# 6 videos x 8 clips, 64 s each (two scene windows), 32 px frames: seconds to build.
TINY = SyntheticSpec(videos=6, mcq_videos=5, clips_per_video=8, clip_spacing_s=8.0, clip_len_s=1.0, fps=10.0,
                     size=48, mcq_questions=6, seed=3)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic(out, TINY, progress=False)
    return out


@pytest.fixture(scope="session")
def egoclip_shards(synthetic_dir):
    out = synthetic_dir / "shards"
    manifest, ok = make_shards(ShardRun(task="egoclip", csv=str(synthetic_dir / "egoclip.csv"),
                                        videos=str(synthetic_dir / "videos"), out=str(out), workers=1,
                                        samples_per_shard=10, progress=False, encode=EncodeOptions(short_side=0)))
    assert ok and manifest["total_samples"] == 48
    return out
