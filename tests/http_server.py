"""A real HTTP server on 127.0.0.1 for the shard-reading tests: ranged GETs, scripted failures, redirects."""
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_tar(samples: int = 40, size: int = 3000) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for i in range(samples):
            for ext, data in (("json", json.dumps({"id": i}).encode()), ("mp4", bytes([i % 256]) * size)):
                info = tarfile.TarInfo(f"s{i:04d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class FlakyServer:
    """Serves ``files`` over HTTP with ranges; GETs follow ``script`` first: "503" answers 503, "drop" sends
    the headers and half the body, then closes the connection. A path in ``redirects`` answers every request
    with a 302 to its URL (a path, or a URL on another server)."""

    def __init__(self, files: dict[str, bytes], script: list[str] = (), redirects: dict[str, str] | None = None):
        self.files, self.script, self.gets = files, list(script), 0
        self.redirects, self.redirected, self.requests = dict(redirects or {}), 0, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _range(self, data):
                spec = self.headers.get("Range")
                if not spec:
                    return 0, len(data)
                start, _, end = spec.removeprefix("bytes=").partition("-")
                return int(start), min(len(data), int(end) + 1 if end else len(data))

            def _headers(self, data, status, start, end):
                self.send_response(status)
                self.send_header("Content-Length", str(end - start))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                self.end_headers()

            def _lookup(self):
                """The file at this path, or None once a redirect or a 404 has been answered instead."""
                server.requests += 1
                target = server.redirects.get(self.path)
                if target is not None:
                    server.redirected += 1
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                return data

            def do_HEAD(self):
                data = self._lookup()
                if data is not None:
                    self._headers(data, 200, 0, len(data))

            def do_GET(self):
                data = self._lookup()
                if data is None:
                    return
                server.gets += 1
                action = server.script.pop(0) if server.script else "ok"
                if action in ("503", "403"):
                    self.send_response(int(action))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start, end = self._range(data)
                self._headers(data, 206 if self.headers.get("Range") else 200, start, end)
                if action == "drop":
                    self.wfile.write(data[start:start + (end - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(data[start:end])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
