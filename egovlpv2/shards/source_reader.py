"""Reading source videos clip after clip: decode forward instead of seeking when the next clip is near.

Shards store each scene window's clips in time order, so consecutive clips of a shard usually come from
the same file a few seconds apart. A seek costs on average half a GOP of decoding (about 4 s with the
250-frame GOP of common Ego4D re-encodes), whereas the gap to the next narration is typically shorter.
Recently decoded frames are kept for a short while, for clips that overlap the previous one.
"""
from __future__ import annotations

from collections import deque
from fractions import Fraction


class SourceError(Exception):
    """The file cannot be opened or decoded."""


class SourceReader:
    def __init__(self, keep_s: float = 1.5, forward_s: float = 8.0):
        self.keep_s, self.forward_s = keep_s, forward_s
        self._path, self._container = None, None

    def __enter__(self) -> "SourceReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._path, self._container = None, None

    def _open(self, path: str) -> None:
        import av

        self.close()
        try:
            self._container = av.open(path)
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"corrupt video {path}: {exc}") from exc
        if not self._container.streams.video:
            raise SourceError(f"no video stream in {path}")
        self._path = path
        self._stream = self._container.streams.video[0]
        s = self._stream
        # One decoder thread: a writer runs one process per core, and frame threads only add CPU time.
        s.codec_context.thread_count = 1
        self.rate = s.average_rate or s.guessed_rate
        self.duration = float(s.duration * s.time_base) if s.duration else (self._container.duration or 0) / 1e6
        self._decoded, self._recent, self._last_t, self._done = None, deque(), float("-inf"), False

    def _seek(self, start: float) -> None:
        if start > 1.0:
            self._container.seek(int(start / self._stream.time_base), stream=self._stream, backward=True)
        else:
            self._container.seek(0, stream=self._stream, backward=True)
        self._decoded, self._recent, self._last_t, self._done = self._container.decode(self._stream), deque(), float("-inf"), False

    def info(self, path: str) -> tuple[Fraction | None, float]:
        if path != self._path:
            self._open(path)
        return self.rate, self.duration

    def frames(self, path: str, start: float, end: float) -> list[tuple[float, object]]:
        """PyAV frames of ``path`` with file time in [start, end), in order."""
        import av

        if path != self._path:
            self._open(path)
        earliest = self._recent[0][0] if self._recent else self._last_t
        if self._decoded is None or start < earliest or start - self._last_t > self.forward_s:
            self._seek(start)
        out = [(t, f) for t, f in self._recent if start <= t < end]
        try:
            while not self._done and self._last_t < end:
                frame = next(self._decoded, None)
                if frame is None:
                    self._done = True
                    break
                if frame.time is None:
                    continue
                t = frame.time
                self._recent.append((t, frame))
                self._last_t = t
                if start <= t < end:
                    out.append((t, frame))
                while self._recent and self._recent[0][0] < t - self.keep_s:
                    self._recent.popleft()
        except (av.error.FFmpegError, OSError) as exc:
            path, self._path = self._path, None  # reopen next time
            raise SourceError(f"corrupt video {path}: {exc}") from exc
        return out
