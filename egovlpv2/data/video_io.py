"""Decoding sampled frames of a shard sample from in-memory bytes.

decord (one thread) first, PyAV as fallback; indices are clamped to the frames that actually decode,
and the decode of one sample is bounded in time, because decord can hang on streams that over-report
their frame count. Failures raise SampleError with a reason that the loaders count.
"""
from __future__ import annotations

import concurrent.futures
import io
import struct
from typing import Callable

import numpy as np

_JPEG_MAGIC = b"EGJP"


class SampleError(Exception):
    """A sample that cannot be used; ``reason`` is the counter it is reported under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def pack_jpegs(jpegs: list[bytes]) -> bytes:
    """Several JPEG frames in one tar member (many small members make tar reading the bottleneck)."""
    header = _JPEG_MAGIC + struct.pack(f"<I{len(jpegs)}I", len(jpegs), *(len(j) for j in jpegs))
    return header + b"".join(jpegs)


def unpack_jpegs(data: bytes) -> list[bytes]:
    if data[:4] != _JPEG_MAGIC or len(data) < 8:
        raise SampleError("decode_error", "not a packed-JPEG member")
    (count,) = struct.unpack_from("<I", data, 4)
    sizes = struct.unpack_from(f"<{count}I", data, 8)
    pos, out = 8 + 4 * count, []
    for size in sizes:
        out.append(data[pos:pos + size])
        pos += size
    if pos != len(data):
        raise SampleError("decode_error", "packed-JPEG member is truncated")
    return out


def _decode_jpegs(data: bytes, choose: Callable[[int], list[int]]) -> np.ndarray:
    import cv2

    jpegs = unpack_jpegs(data)
    frames = []
    for i in choose(len(jpegs)):
        bgr = cv2.imdecode(np.frombuffer(jpegs[i], np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SampleError("decode_error", f"JPEG frame {i} does not decode")
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return np.stack(frames)


def _decode_decord(data: bytes, choose: Callable[[int], list[int]], num_frames: int) -> np.ndarray:
    import decord

    reader = decord.VideoReader(io.BytesIO(data), num_threads=1)
    available = min(len(reader), num_frames) if num_frames > 0 else len(reader)
    if available <= 0:
        raise SampleError("empty_video")
    return reader.get_batch(choose(available)).asnumpy()


def _decode_pyav(data: bytes, choose: Callable[[int], list[int]], num_frames: int) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        count = num_frames if num_frames > 0 else (stream.frames or 0)
        if count <= 0:  # unknown length: decode everything once
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            if not frames:
                raise SampleError("empty_video")
            return np.stack([frames[i] for i in choose(len(frames))])
        wanted = choose(count)
        last, kept = max(wanted), {}
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                kept[i] = frame.to_ndarray(format="rgb24")
            if i >= last:
                break
    if not kept:
        raise SampleError("empty_video")
    decoded = sorted(kept)  # clamp to the frames that really decoded
    return np.stack([kept[i] if i in kept else kept[decoded[-1]] for i in wanted])


class FrameDecoder:
    """Decodes chosen frames of one sample member with a per-sample time bound."""

    def __init__(self, backend: str = "auto", timeout_s: float = 10.0):
        if backend not in ("auto", "decord", "pyav"):
            raise ValueError(f"unknown decode backend {backend!r}")
        self.backend = backend
        self.timeout_s = timeout_s
        self._pool = concurrent.futures.ThreadPoolExecutor(1)

    def _decode(self, kind: str, data: bytes, choose, num_frames: int) -> np.ndarray:
        if kind == "jpgs":
            return _decode_jpegs(data, choose)
        if self.backend == "pyav":
            return _decode_pyav(data, choose, num_frames)
        try:
            return _decode_decord(data, choose, num_frames)
        except SampleError:
            raise
        except Exception as exc:  # decord raises its own DECORDError and RuntimeError kinds
            if self.backend == "decord":
                raise SampleError("decode_error", f"decord: {exc}") from exc
            return _decode_pyav(data, choose, num_frames)

    def __call__(self, kind: str, data: bytes, choose: Callable[[int], list[int]], num_frames: int = 0) -> np.ndarray:
        """Frames ``[T, H, W, 3]`` uint8 at ``choose(available_frames)``; ``kind`` is ``mp4`` or ``jpgs``.

        ``num_frames`` is the frame count recorded at shard time, used to clamp indices."""
        future = self._pool.submit(self._decode, kind, data, choose, num_frames)
        try:
            return future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            # The stuck thread cannot be killed; abandon it and decode the next samples on a fresh one.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = concurrent.futures.ThreadPoolExecutor(1)
            raise SampleError("decode_timeout", f"no result after {self.timeout_s} s") from None
        except SampleError:
            raise
        except Exception as exc:
            raise SampleError("decode_error", f"{type(exc).__name__}: {exc}") from exc
