"""Shard locations: local paths or object-storage URLs (s3://, gs://, http(s)://), read as streams.

Every reader and writer of shards goes through here. URLs go to fsspec (s3fs, gcsfs, aiohttp); credentials
and endpoints come from each scheme's standard environment (AWS_* variables and profiles, AWS_ENDPOINT_URL
for S3-compatible stores, GOOGLE_APPLICATION_CREDENTIALS), never from this code. A location never runs a
command: webdataset's ``pipe:`` form, fsspec's ``a::b`` chaining and every other scheme are refused, so a
manifest or config written by someone else cannot make a reader execute anything.

Transient failures (connection resets, timeouts, 5xx, throttling) are retried with exponential backoff,
each retry logged; a stream resumes at the byte where it broke, and only in the version of the object it
started on (ETag / generation), so a reconnect never splices two versions of one object. An http(s) shard
may redirect within its own origin (scheme, host, port) only: a redirect elsewhere (a metadata address,
another service) is refused. What still fails raises ``StorageError`` naming the location.
"""
from __future__ import annotations

import io
import logging
import os
import time
from functools import lru_cache
from typing import Callable, Iterator, TypeVar

from egovlpv2.errors import UserError

log = logging.getLogger(__name__)

URL_SCHEMES = ("s3", "gs", "gcs", "http", "https")
ATTEMPTS = 6                    # tries per operation, the first one included
BACKOFF_S = 0.5                 # first wait; doubles per retry up to BACKOFF_MAX_S
BACKOFF_MAX_S = 8.0
STREAM_BLOCK = 8 << 20          # bytes one open stream holds (fsspec read-ahead block): bounded memory per reader
# Fields of an open object's details that change whenever the object is replaced (S3 ETag / version id,
# GCS generation, an HTTP server's ETag or Last-Modified).
VERSION_FIELDS = ("VersionId", "ETag", "generation", "Last-Modified")
REPLACED = "the object was replaced while it was being read (shards must not change during a run)"
THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
                  "RequestTimeout", "InternalError", "ServiceUnavailable"}

T = TypeVar("T")


class StorageError(UserError):
    """A location that cannot be read or written: missing, access denied, or still failing after retries."""


class RedirectRefused(StorageError):
    """An http(s) location answered with a redirect to another origin."""


class ObjectChanged(StorageError):
    """An object was replaced while a stream of it was open."""


def check_location(loc: str) -> str:
    """``loc`` itself when it is a local path or a URL of a supported scheme; a UserError otherwise."""
    loc = str(loc)
    if not loc:
        raise UserError("empty shard location")
    if loc.startswith("pipe:") or "::" in loc or loc.lstrip().startswith("|"):
        raise UserError(f"{loc!r}: command and chained locations are not accepted; give a path or a "
                        f"{'/'.join(URL_SCHEMES)} URL")
    scheme, sep, _ = loc.partition("://")
    if sep and scheme not in URL_SCHEMES and scheme != "file":
        raise UserError(f"{loc!r}: unsupported scheme {scheme!r}; one of {', '.join(URL_SCHEMES)} or a local path")
    return loc


def is_url(loc: str) -> bool:
    scheme, sep, _ = check_location(loc).partition("://")
    return bool(sep) and scheme != "file"


def _local(loc: str) -> str:
    return loc[len("file://"):] if loc.startswith("file://") else loc


def join(base: str, name: str) -> str:
    """``name`` (a plain file name, e.g. from a manifest) inside the directory or prefix ``base``."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or ":" in name:
        raise UserError(f"{name!r} is not a plain file name (a manifest names files beside itself)")
    base = check_location(base)
    return f"{base.rstrip('/')}/{name}" if is_url(base) else os.path.join(_local(base), name)


def _origin(url) -> tuple[str, str, int | None]:
    return url.scheme, (url.host or "").lower(), url.port


@lru_cache(maxsize=None)
def _same_origin_redirects():
    """aiohttp request tracing that refuses, before it is followed, any redirect leaving the request's origin."""
    import aiohttp
    from yarl import URL

    async def on_redirect(session, context, params) -> None:
        target = params.url.join(URL(params.response.headers.get("Location", "")))
        if _origin(target) != _origin(params.url):
            raise RedirectRefused(f"redirected to another host ({target.scheme}://{target.host}:{target.port}); "
                                  f"shards are read only from the host their location names")

    trace = aiohttp.TraceConfig()
    trace.on_request_redirect.append(on_redirect)
    return trace


def _filesystem(url: str):
    import fsspec

    scheme, _, path = url.partition("://")
    if scheme in ("http", "https"):
        return fsspec.filesystem(scheme, client_kwargs={"trace_configs": [_same_origin_redirects()]}), url
    return fsspec.filesystem(scheme), path


def _status(exc: BaseException) -> int | None:
    """HTTP status carried by an aiohttp / botocore error, if any."""
    for attr in ("status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or during, outermost first."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: connection trouble, timeouts, throttling and server-side (5xx) errors."""
    if any(isinstance(e, StorageError) for e in _chain(exc)):  # a refusal of this module's own: final
        return False
    for exc in _chain(exc):
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, UserError)):
            return False
        response = getattr(exc, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in THROTTLE_CODES:
            return True
        status = _status(exc)
        if status is not None:  # an HTTP answer: the server's trouble or throttling, not the request's
            return status >= 500 or status in (408, 429)
        if isinstance(exc, (ConnectionError, TimeoutError, EOFError)) or type(exc).__module__.startswith("aiohttp"):
            return True
    return False


def missing_bucket(url: str) -> str | None:
    """The bucket of an s3:// or gs:// URL when that bucket does not exist (None otherwise, or when unknown)."""
    scheme, _, path = url.partition("://")
    if scheme not in ("s3", "gs", "gcs"):
        return None
    fs, _ = _filesystem(url)
    bucket = path.split("/", 1)[0]
    try:
        return None if fs.exists(bucket) else bucket
    except Exception:  # noqa: BLE001 - only a better message is at stake; the caller reports the original error
        return None


def _final(loc: str, what: str, exc: BaseException, tries: int) -> StorageError:
    refused = next((e for e in _chain(exc) if isinstance(e, StorageError)), None)
    if refused is not None:  # raised by this module, maybe wrapped by fsspec (e.g. as FileNotFoundError)
        return type(refused)(f"cannot {what} {loc}: {refused}")
    if any(type(e).__name__ == "FileExpired" for e in _chain(exc)):  # fsspec: the version a read pinned is gone
        return ObjectChanged(f"cannot {what} {loc}: {REPLACED}")
    if isinstance(exc, FileNotFoundError):
        bucket = missing_bucket(loc)
        reason = f"bucket {bucket!r} does not exist" if bucket else "no such object"
    elif isinstance(exc, PermissionError):
        reason = "access denied (check the credentials: AWS_ACCESS_KEY_ID / AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS)"
    else:
        reason = f"{type(exc).__name__}: {exc}" + (f" (after {tries} attempts)" if tries > 1 else "")
    return StorageError(f"cannot {what} {loc}: {reason}")


def _retry_or_raise(loc: str, what: str, exc: Exception, attempt: int, where: str = "") -> None:
    """Wait before the next attempt (logged), or raise the StorageError that ends the tries."""
    if not is_transient(exc) or attempt == ATTEMPTS:
        raise _final(loc, what, exc, attempt) from exc
    wait = min(BACKOFF_S * 2 ** (attempt - 1), BACKOFF_MAX_S)
    log.warning("%s %s failed%s (%s: %s); retry %d/%d in %.1fs", what, loc, where, type(exc).__name__, exc,
                attempt, ATTEMPTS - 1, wait)
    time.sleep(wait)


def retrying(loc: str, what: str, op: Callable[[], T]) -> T:
    """``op()``, retried with backoff while it fails transiently; a StorageError naming ``loc`` when it gives up."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return op()
        except Exception as exc:  # noqa: BLE001 - classified by _retry_or_raise
            _retry_or_raise(loc, what, exc, attempt)
    raise AssertionError("unreachable")


def _version(file) -> dict:
    """What identifies the version of an open object (empty when its store reports none)."""
    details = getattr(file, "details", None) or {}
    return {k: details[k] for k in VERSION_FIELDS if details.get(k)}


def _describe(version: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in version.items()) or "no version"


class RetryingReader(io.RawIOBase):
    """A seekable binary stream of one object that reopens at the current byte after a transient failure."""

    def __init__(self, url: str, block_size: int | None = None):
        self.url, self.block_size, self.pos = url, block_size or STREAM_BLOCK, 0
        self._fs, self._path = _filesystem(url)
        self._file = None
        self._open()
        self.version = _version(self._file)

    def _open(self) -> None:
        def op():
            f = self._fs.open(self._path, "rb", block_size=self.block_size, cache_type="readahead")
            if self.pos:
                f.seek(self.pos)
            return f
        self._file = retrying(self.url, "open", op)

    def _reopen(self) -> None:
        """A fresh connection at the current byte, of the very version the stream started on."""
        self._close_file()
        self._open()
        version = _version(self._file)
        if version != self.version:
            raise ObjectChanged(f"cannot read {self.url}: {REPLACED} (reopened at byte {self.pos}: "
                                f"{_describe(self.version)} became {_describe(version)})")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                data = self._file.read(len(buffer))
                break
            except Exception as exc:  # noqa: BLE001 - classified by _retry_or_raise
                _retry_or_raise(self.url, "read", exc, attempt, f" at byte {self.pos}")
                self._reopen()
        buffer[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = retrying(self.url, "seek in", lambda: self._file.seek(offset, whence))
        return self.pos

    def tell(self) -> int:
        return self.pos

    def _close_file(self) -> None:
        try:
            self._file.close()
        except Exception:  # noqa: BLE001 - a broken connection may also fail to close; it is dropped either way
            pass

    def close(self) -> None:
        if self._file is not None:
            self._close_file()
            self._file = None
        super().close()


def open_read(loc: str) -> io.BufferedReader:
    """A buffered, seekable binary stream of ``loc`` (memory bounded by ``STREAM_BLOCK`` for URLs)."""
    if is_url(loc):
        return io.BufferedReader(RetryingReader(loc), buffer_size=64 << 10)
    return open(_local(loc), "rb")


def read_bytes(loc: str) -> bytes:
    if is_url(loc):
        fs, path = _filesystem(loc)
        return retrying(loc, "read", lambda: fs.cat_file(path))
    with open(_local(loc), "rb") as f:
        return f.read()


def read_range(loc: str, offset: int, size: int) -> bytes:
    """``size`` bytes of ``loc`` from ``offset`` (one ranged request for a URL)."""
    if is_url(loc):
        fs, path = _filesystem(loc)
        return retrying(loc, "read", lambda: fs.cat_file(path, start=offset, end=offset + size))
    with open(_local(loc), "rb") as f:
        f.seek(offset)
        return f.read(size)


def exists(loc: str) -> bool:
    if is_url(loc):
        fs, path = _filesystem(loc)
        if retrying(loc, "look up", lambda: fs.exists(path)):
            return True
        bucket = missing_bucket(loc)
        if bucket:
            raise StorageError(f"cannot look up {loc}: bucket {bucket!r} does not exist")
        return False
    return os.path.exists(_local(loc))


def size(loc: str) -> int | None:
    """Bytes stored at ``loc``, or None when nothing is there."""
    if not is_url(loc):
        return os.path.getsize(_local(loc)) if os.path.isfile(_local(loc)) else None
    fs, path = _filesystem(loc)

    def op():
        try:
            return fs.info(path)["size"]
        except FileNotFoundError:
            return None
    fs.invalidate_cache(path)
    return retrying(loc, "look up", op)


def upload(local: str, url: str) -> int:
    """Put the local file ``local`` at ``url`` (an object appears whole or not at all) and check its size."""
    if url.split("://")[0] in ("http", "https"):
        raise UserError(f"{url}: http(s) locations are read-only; write shards to s3://, gs:// or a local path")
    fs, path = _filesystem(url)
    expected = os.path.getsize(local)
    retrying(url, "upload to", lambda: fs.put_file(local, path))
    stored = size(url)
    if stored != expected:
        raise StorageError(f"upload to {url} stored {stored} bytes, not the {expected} of {local}")
    return stored


def remove(loc: str) -> None:
    if is_url(loc):
        fs, path = _filesystem(loc)
        retrying(loc, "remove", lambda: fs.rm_file(path))
    else:
        os.unlink(_local(loc))


def list_names(loc: str) -> list[str]:
    """File names directly under the directory or prefix ``loc`` (empty when there is none)."""
    if not is_url(loc):
        return sorted(os.listdir(_local(loc))) if os.path.isdir(_local(loc)) else []
    fs, path = _filesystem(loc)

    def op():
        try:
            return fs.ls(path.rstrip("/"), detail=False, refresh=True)
        except FileNotFoundError:
            return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in retrying(loc, "list", op))
