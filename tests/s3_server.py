"""A real S3-compatible server (moto's server mode) on 127.0.0.1 for the object-storage tests.

By default it accepts any credentials. With ``auth=True`` it enforces signatures and IAM: the first three
requests (no auth) create a user with an s3:* policy and its access key, after which every request must be
signed by that key, so wrong credentials really fail. (moto's signature check rejects some correctly signed
listings, so the auth-free server carries the bulk of the tests.)
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from egovlpv2.dist.env import free_port
from tests.helpers import liveness

SETUP_ACTIONS = 3  # create_user, put_user_policy, create_access_key


@dataclass
class S3Server:
    endpoint: str
    key: str
    secret: str
    scheme = "s3"
    stamp = "LastModified"  # the field of an object's info that a rewrite changes

    def env(self, **changes: str) -> dict[str, str]:
        """The standard AWS variables that point s3fs / boto at this server with this key."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.key,
                "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": "us-east-1", **changes}

    def filesystem(self, **kwargs):
        import s3fs

        return s3fs.S3FileSystem(key=self.key, secret=self.secret, skip_instance_cache=True,
                                 client_kwargs={"endpoint_url": self.endpoint}, **kwargs)


def wait_for_port(port: int, proc: subprocess.Popen, log, timeout: float = 60.0) -> None:
    """Return once ``proc`` (a server logging to the file ``log``) listens on ``port``."""
    timeout = liveness(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{proc.args[2]} exited with {proc.returncode}: {log.read()}")
        with socket.socket() as sock:  # a bare connect: no HTTP request, so no auth-free action is spent
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{proc.args[2]} did not listen on port {port} within {timeout:.0f} s")


def start_server(auth: bool = False) -> tuple[subprocess.Popen, S3Server]:
    import boto3

    port = free_port()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(SETUP_ACTIONS)) if auth else dict(os.environ)
    # A file, not a pipe: the server logs every request, and a pipe nobody drains fills up and stalls it.
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, proc, log)
        if not auth:
            return proc, S3Server(endpoint, "test-key", "test-secret")
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                           aws_secret_access_key="setup")
        iam.create_user(UserName="trainer")
        iam.put_user_policy(UserName="trainer", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="trainer")["AccessKey"]
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)  # the server's own shutdown path (it may sit through a SIGTERM)
    try:
        proc.wait(timeout=liveness(10))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
