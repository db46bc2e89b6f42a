import os

import pytest
import torch

from tests.s3_server import start_server, stop_server

AWS_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """An S3-compatible server on 127.0.0.1, with this session's AWS variables pointing at it (so every
    process the tests start, torchrun ranks included, reaches it the standard way); stopped afterwards."""
    proc, server = start_server()
    saved = {k: os.environ.get(k) for k in (*server.env(), *AWS_VARIABLES)}
    for name in AWS_VARIABLES:
        os.environ.pop(name, None)
    empty = tmp_path_factory.mktemp("aws")  # no profile or config of the machine's user may leak in
    os.environ.update(server.env(AWS_CONFIG_FILE=str(empty / "config"),
                                 AWS_SHARED_CREDENTIALS_FILE=str(empty / "credentials")))
    try:
        yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        stop_server(proc)


@pytest.fixture(scope="session")
def s3_auth_server():
    """A second S3-compatible server that checks credentials (a known key with an s3:* policy)."""
    proc, server = start_server(auth=True)
    try:
        yield server
    finally:
        stop_server(proc)


@pytest.fixture
def one_thread():
    """The single-process references run tiny ops: one thread avoids oversubscribing a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
