"""Object storage that misbehaves: an http(s) shard host redirecting elsewhere, and an S3 object replaced
while a reader's connection is reset (real servers on 127.0.0.1: an HTTP server, moto behind a TCP proxy)."""
import logging
import selectors
import socket
import struct
import threading

import pytest
import s3fs

from egovlpv2 import storage
from egovlpv2.data.stream import read_tar
from egovlpv2.storage import ObjectChanged, RedirectRefused
from tests.http_server import FlakyServer, make_tar


def test_a_redirect_to_another_host_is_refused_naming_the_shard():
    data = make_tar(3)
    with FlakyServer({"/latest/meta-data/iam/security-credentials/": data}) as other, \
            FlakyServer({"/shards/b.tar": data}, redirects={
                "/shards/a.tar": f"{other.url}/latest/meta-data/iam/security-credentials/",
                "/shards/moved.tar": "/shards/b.tar"}) as server:
        assert len(list(read_tar(f"{server.url}/shards/moved.tar"))) == 3  # a redirect on the same host is followed
        with pytest.raises(RedirectRefused) as caught:
            list(read_tar(f"{server.url}/shards/a.tar"))
        assert other.requests == 0  # never followed, not even once
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"cannot open {server.url}/shards/a.tar: "), message
    assert f"another host ({other.url})" in message, message


class ResettingProxy:
    """A TCP proxy on 127.0.0.1 in front of ``port``. After ``break_next_response(after, before_reset)`` the next
    response is cut after ``after`` bytes, ``before_reset()`` runs and the connection is reset (RST); every
    later response is reset before its first byte until ``heal()``."""

    def __init__(self, port: int):
        self.upstream = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.cut, self.broken, self.resets = None, False, 0
        threading.Thread(target=self._accept, daemon=True).start()

    def break_next_response(self, after: int, before_reset) -> None:
        with self.lock:
            self.cut = [after, before_reset]

    def heal(self) -> None:
        with self.lock:
            self.broken = False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pump, args=(client, socket.create_connection(self.upstream)),
                             daemon=True).start()

    def _allowance(self, n: int):
        """(bytes of this chunk to pass on, the callback to run before a reset, or None to pass it all)."""
        with self.lock:
            if self.cut is not None:
                if n < self.cut[0]:
                    self.cut[0] -= n
                    return n, None
                (keep, before_reset), self.cut, self.broken = self.cut, None, True
                return keep, before_reset
            return (0, lambda: None) if self.broken else (n, None)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        # One thread per connection, both directions: a reset closes sockets no other thread is using.
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while True:
                for key, _ in selector.select():
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    if key.fileobj is upstream:
                        keep, before_reset = self._allowance(len(data))
                        if before_reset is not None:
                            client.sendall(data[:keep])
                            before_reset()
                            self.resets += 1
                            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                            return
                    key.data.sendall(data)
        except OSError:
            pass
        finally:
            selector.close()
            client.close()
            upstream.close()

    def close(self) -> None:
        self.listener.close()


class HealOnRetry(logging.Handler):
    """Ends the proxy's outage once the reader gives up on its connection and logs that it will reopen."""

    def __init__(self, proxy: ResettingProxy):
        super().__init__()
        self.proxy = proxy

    def emit(self, record: logging.LogRecord) -> None:
        if "retry" in record.getMessage():
            self.proxy.heal()


@pytest.fixture
def s3_through_proxy(s3_server, monkeypatch):
    """The S3 server reached through a ResettingProxy (AWS_ENDPOINT_URL), one attempt per botocore call (so
    an outage reaches the reader after s3fs's own retries, not after botocore's long backoff as well)."""
    proxy = ResettingProxy(int(s3_server.endpoint.rsplit(":", 1)[1]))
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr(storage, "BACKOFF_S", 0.01)
    monkeypatch.setattr(storage, "STREAM_BLOCK", 16 << 10)  # several ranged reads per object
    handler = HealOnRetry(proxy)
    logging.getLogger("egovlpv2.storage").addHandler(handler)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield proxy
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        logging.getLogger("egovlpv2.storage").removeHandler(handler)
        proxy.close()


@pytest.mark.slow
def test_an_s3_reconnect_never_splices_two_versions_of_an_object(s3_server, s3_through_proxy):
    fs = s3_server.filesystem()
    fs.mkdir("versions")
    old, new = bytes(range(256)) * 512, bytes(reversed(range(256))) * 512  # 128 KiB each, the same size
    fs.pipe("versions/unchanged.tar", old)
    fs.pipe("versions/replaced.tar", old)
    # An outage mid-body with the object unchanged: the reader reopens at the byte where it broke.
    with storage.open_read("s3://versions/unchanged.tar") as stream:
        head = stream.read(20000)
        s3_through_proxy.break_next_response(8000, before_reset=lambda: None)
        assert head + stream.read() == old
    assert s3_through_proxy.resets > 1  # s3fs's own retries ran into the outage too, then the reader reopened
    # The same outage, with the object replaced by other bytes of the same size before the reset.
    with storage.open_read("s3://versions/replaced.tar") as stream:
        stream.read(20000)
        s3_through_proxy.break_next_response(8000, before_reset=lambda: fs.pipe("versions/replaced.tar", new))
        with pytest.raises(ObjectChanged) as caught:
            stream.read()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("cannot read s3://versions/replaced.tar: "), message
    assert "replaced while it was being read" in message and "ETag" in message, message
