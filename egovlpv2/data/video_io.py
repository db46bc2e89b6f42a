"""Decoding sampled frames of a shard sample from in-memory bytes.

Three backends, one FFmpeg/libavcodec thread each, return the same frames for the same indices: frame i is
the i-th in presentation order (also at a variable frame rate), and indices are clamped to the frames that
actually decode. ``auto`` tries the fastest that is installed first and the others for a sample it fails
on. The decode of one sample is bounded in time, because decord can hang on streams that over-report their
frame count. Failures raise SampleError with a reason that the loaders count.
"""
from __future__ import annotations

import functools
import importlib
import io
import struct
import threading
from typing import Any, Callable, Iterator

import numpy as np

from egovlpv2.errors import UserError

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
    wanted = choose(len(jpegs))
    frames = {}
    for i in sorted(set(wanted)):  # a frame chosen twice (more frames asked than stored) is decoded once
        rgb = cv2.imdecode(np.frombuffer(jpegs[i], np.uint8), cv2.IMREAD_COLOR_RGB)  # libjpeg writes RGB itself
        if rgb is None:
            raise SampleError("decode_error", f"JPEG frame {i} does not decode")
        frames[i] = rgb
    return np.stack([frames[i] for i in wanted])


def _decode_decord(data: bytes, choose: Callable[[int], list[int]], num_frames: int) -> np.ndarray:
    import decord

    reader = decord.VideoReader(io.BytesIO(data), num_threads=1)
    return reader.get_batch(choose(_available(len(reader), num_frames))).asnumpy()


def _decode_torchcodec(data: bytes, choose: Callable[[int], list[int]], num_frames: int) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    # "exact" indexes the packets once (cheap for a clip) so that frame i is the i-th in presentation order
    # even at a variable frame rate; one FFmpeg thread per loader worker.
    decoder = VideoDecoder(data, seek_mode="exact", num_ffmpeg_threads=1, dimension_order="NHWC")
    frames = decoder.get_frames_at(choose(_available(decoder.metadata.num_frames or 0, num_frames))).data
    return frames.numpy()


def pyav_frames(data: bytes, choose: Callable[[int], list[int]], num_frames: int) -> Iterator[tuple[int, Any]]:
    """(index, av.VideoFrame) for each distinct chosen index, ascending: frame i is the i-th packet in
    presentation order (as decord and torchcodec count, at any frame rate).

    The packets are demuxed once; each target is decoded from the key frame before it, carrying on through the
    GOP when the next target lies in the same one. Nothing is converted here."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"  # one core per loader worker
        packets = [p for p in container.demux(stream) if p.size and p.pts is not None]
        by_pts = sorted(range(len(packets)), key=lambda i: packets[i].pts)  # presentation order -> decode order
        targets = sorted(set(choose(_available(len(packets), num_frames))))
        index_of = {packets[by_pts[t]].pts: t for t in targets}
        codec, pos, drained, ready = stream.codec_context, 0, False, {}
        for target in targets:
            at, target_pts = by_pts[target], packets[by_pts[target]].pts
            key = next((k for k in range(at, -1, -1) if packets[k].is_keyframe and packets[k].pts <= target_pts), 0)
            if target_pts not in ready and (pos < key or drained):  # the GOP lies ahead: jump to its key frame
                codec.flush_buffers()
                pos, drained = key, False
            while target_pts not in ready and not drained:
                drained = pos == len(packets)
                ready.update((f.pts, f) for f in codec.decode(None if drained else packets[pos]) if f.pts in index_of)
                pos += 1
            if target_pts not in ready:
                raise SampleError("decode_error", f"frame {target} does not decode")
            yield target, ready.pop(target_pts)


def _decode_pyav(data: bytes, choose: Callable[[int], list[int]], num_frames: int) -> np.ndarray:
    wanted: list[int] = []

    def keep(n: int) -> list[int]:
        wanted.extend(choose(n))
        return wanted

    rgb = {i: frame.to_ndarray(format="rgb24") for i, frame in pyav_frames(data, keep, num_frames)}
    return np.stack([rgb[i] for i in wanted])


def _available(decodable: int, num_frames: int) -> int:
    """Frames the indices may address: those that decode, and no more than the shard recorded."""
    available = min(decodable, num_frames) if num_frames > 0 else decodable
    if available <= 0:
        raise SampleError("empty_video")
    return available


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


_BACKENDS = {"pyav": _decode_pyav, "decord": _decode_decord, "torchcodec": _decode_torchcodec}
# auto: the fastest first for the clip length, by the loader's measured clips per CPU second on shards at the
# default encode options (benchmarks/RESULTS.md, "Decoding at the codec's limit"): for a few frames PyAV,
# which converts only the chosen frames; for many, torchcodec, which has no per-frame Python. All three
# return the same frames, so a later one only stands in for a sample that an earlier one fails on.
AUTO_ORDER = {"few": ("pyav", "torchcodec", "decord"), "many": ("torchcodec", "pyav", "decord")}
MANY_FRAMES = 8  # a clip with more frames than this counts as many (8: one GOP of the shards)
_MODULES = {"torchcodec": "torchcodec.decoders", "decord": "decord", "pyav": "av"}


@functools.cache
def backend_usable(name: str) -> bool:
    """Whether backend ``name`` imports in this process (torchcodec also needs FFmpeg's libraries)."""
    try:
        importlib.import_module(_MODULES[name])
    except Exception:  # noqa: BLE001 - ImportError, or torchcodec's RuntimeError/OSError for missing libraries
        return False
    return True


def backend_chain(backend: str, frames_per_clip: int = 0) -> tuple[str, ...]:
    """The backends a FrameDecoder tries in turn: ``backend`` alone, or for ``auto`` those of AUTO_ORDER for
    ``frames_per_clip`` that load."""
    order = AUTO_ORDER["many" if frames_per_clip > MANY_FRAMES else "few"] if backend == "auto" else (backend,)
    chain = tuple(name for name in order if backend_usable(name))
    if not chain:
        missing = "torchcodec, decord and PyAV (av)" if backend == "auto" else _MODULES[backend]
        raise UserError(f"data.decode_backend={backend}: {missing} cannot be imported here "
                        f"(pip install -r requirements.txt; torchcodec also needs FFmpeg's libraries)")
    return chain


class FrameDecoder:
    """Decodes chosen frames of one sample member with a per-sample time bound.

    Cheap to build and to pickle: the backends are imported at the first video decode (in a DataLoader
    worker), outside the time bound."""

    def __init__(self, backend: str = "auto", timeout_s: float = 10.0, frames_per_clip: int = 0):
        """``frames_per_clip``: how many frames a clip usually asks for (orders ``auto``'s backends)."""
        if backend != "auto" and backend not in _BACKENDS:
            raise UserError(f"data.decode_backend={backend!r}: choose auto, {', '.join(_BACKENDS)}")
        self.backend, self.frames_per_clip = backend, frames_per_clip
        self.timeout_s = timeout_s
        self.chain: tuple[str, ...] = ()

    def _decode(self, kind: str, data: bytes, choose, num_frames: int) -> np.ndarray:
        if kind == "jpgs":
            return _decode_jpegs(data, choose)
        for name in self.chain[:-1]:
            try:
                return _BACKENDS[name](data, choose, num_frames)
            except SampleError:
                raise
            except Exception:  # noqa: BLE001 - each library raises its own kinds; the next backend stands in
                continue
        return _BACKENDS[self.chain[-1]](data, choose, num_frames)

    def __call__(self, kind: str, data: bytes, choose: Callable[[int], list[int]], num_frames: int = 0) -> np.ndarray:
        """Frames ``[T, H, W, 3]`` uint8 at ``choose(available_frames)``; ``kind`` is ``mp4`` or ``jpgs``.

        ``num_frames`` is the frame count recorded at shard time, used to clamp indices."""
        if kind != "jpgs" and not self.chain:
            self.chain = backend_chain(self.backend, self.frames_per_clip)
        try:
            return call_with_timeout(lambda: self._decode(kind, data, choose, num_frames), self.timeout_s)
        except TimeoutError:
            raise SampleError("decode_timeout", f"no result after {self.timeout_s} s") from None
        except (SampleError, UserError):
            raise
        except Exception as exc:
            raise SampleError("decode_error", f"{type(exc).__name__}: {exc}") from exc
