"""Frames decoded once per video and shared by every question about it.

Video QA benchmarks ask several questions about one video (Video-MME asks
three); decoding it again for each is the waste peers are known for. A
`FrameCache` keeps recently sampled videos within a byte budget (least
recently used first out) and makes concurrent requests for one video wait for
a single decode; `warm` decodes ahead of the questions without waiting on a
decode someone else started. Errors are not cached: a failed decode is tried
again.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass

from harness.media.video import SampledFrames, sample_frames


@dataclass(frozen=True)
class FramesResult:
    """Sampled frames, the seconds this request spent getting them, and whether it decoded."""

    sampled: SampledFrames
    seconds: float
    decoded: bool


class FrameCache:
    """Thread-safe, byte-bounded cache of `sample_frames(path, fps=..., max_frames=...)`."""

    def __init__(self, *, fps: float, max_frames: int, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be 0 or more, got {max_bytes}")
        self.fps = fps
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.decodes = 0
        self._lock = threading.Lock()
        self._done: OrderedDict[str, SampledFrames] = OrderedDict()
        self._pending: dict[str, Future[SampledFrames]] = {}
        self._bytes = 0

    def get(self, path: str | os.PathLike[str]) -> FramesResult:
        """The video's sampled frames, decoding it only if no one has or is."""
        result = self._get(path, wait=True)
        assert result is not None
        return result

    def warm(self, path: str | os.PathLike[str]) -> None:
        """Decode the video now unless it is cached or being decoded already."""
        self._get(path, wait=False)

    def _get(self, path: str | os.PathLike[str], *, wait: bool) -> FramesResult | None:
        started = time.perf_counter()
        key = os.path.realpath(path)
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return FramesResult(self._done[key], time.perf_counter() - started, False)
            future = self._pending.get(key)
            owner = future is None
            if owner:
                future = self._pending[key] = Future()
        assert future is not None
        if not owner:
            if not wait:
                return None
            return FramesResult(future.result(), time.perf_counter() - started, False)
        try:
            sampled = sample_frames(path, fps=self.fps, max_frames=self.max_frames)
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            future.set_exception(exc)
            raise
        with self._lock:
            del self._pending[key]
            self.decodes += 1
            self._keep(key, sampled)
        future.set_result(sampled)
        return FramesResult(sampled, time.perf_counter() - started, True)

    def _keep(self, key: str, sampled: SampledFrames) -> None:
        size = sampled.frames.nbytes
        if size > self.max_bytes:
            return
        self._done[key] = sampled
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._done.popitem(last=False)
            self._bytes -= evicted.frames.nbytes
