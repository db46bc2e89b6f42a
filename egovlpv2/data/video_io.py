"""Decoding sampled frames of a shard sample from in-memory bytes.

decord (one thread) first, PyAV as fallback; indices are clamped to the frames that actually decode,
and the decode of one sample is bounded in time, because decord can hang on streams that over-report
their frame count. Failures raise SampleError with a reason that the loaders count.
"""
from __future__ import annotations

import io
import struct
import threading
from typing import Any, Callable

import numpy as np

_JPEG_MAGIC = b"EGJP"
# Decoding forward is cheaper than a seek for targets within about one GOP of the shards (8 frames).
SEEK_AHEAD = 8


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
    """Decode the chosen frames in ascending order, seeking to the key frame before a target that lies
    more than SEEK_AHEAD frames ahead and decoding forward otherwise."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"  # one core per loader worker
        counts = [c for c in (num_frames, stream.frames or 0) if c > 0]
        rate, tb = stream.average_rate, stream.time_base
        if not counts or not rate:  # unknown length or rate: decode everything once
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            if not frames:
                raise SampleError("empty_video")
            return np.stack([frames[i] for i in choose(len(frames))])
        wanted = choose(min(counts))
        origin = stream.start_time or 0
        kept, decoded, pos, last = {}, None, -1, None
        for target in sorted(set(wanted)):
            if decoded is None or target > pos + SEEK_AHEAD:
                container.seek(origin + int(target / rate / tb), stream=stream, backward=True)
                decoded = container.decode(stream)
            for frame in decoded:
                last, pos = frame, round(float((frame.pts - origin) * tb * rate))
                if pos >= target:
                    break
            if last is None:
                raise SampleError("empty_video")
            # pos < target: the stream ended early, so clamp to the last frame that decoded.
            kept[target] = last.to_ndarray(format="rgb24")
    return np.stack([kept[i] for i in wanted])


def call_with_timeout(fn: Callable[[], Any], timeout_s: float) -> Any:
    """``fn()`` on a daemon thread; TimeoutError after ``timeout_s``. A stuck call cannot be killed, so it is
    abandoned, and being a daemon it does not hold the process at exit (a pool's threads are joined there)."""
    box: dict = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="egovlpv2-decode", daemon=True).start()
    if not done.wait(timeout_s):
        raise TimeoutError
    if "error" in box:
        raise box["error"]
    return box["value"]


class FrameDecoder:
    """Decodes chosen frames of one sample member with a per-sample time bound."""

    def __init__(self, backend: str = "auto", timeout_s: float = 10.0):
        if backend not in ("auto", "decord", "pyav"):
            raise ValueError(f"unknown decode backend {backend!r}")
        self.backend = backend
        self.timeout_s = timeout_s

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
        try:
            return call_with_timeout(lambda: self._decode(kind, data, choose, num_frames), self.timeout_s)
        except TimeoutError:
            raise SampleError("decode_timeout", f"no result after {self.timeout_s} s") from None
        except SampleError:
            raise
        except Exception as exc:
            raise SampleError("decode_error", f"{type(exc).__name__}: {exc}") from exc
