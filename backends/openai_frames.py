"""Frames the client samples and sends to an OpenAI-compatible server, as JPEG data.

`EncodedFrameCache` samples a video's frames with `harness.media.frames.FrameCache`
(by the recipe `local` uses: the same indices), encodes each as JPEG with FFmpeg's
mjpeg encoder through PyAV (no image library needed), and keeps the base64 text per
video within a byte budget, least recently used first out, so every question about a
video sends the frames encoded once, ahead of its turn (`warm`, from the runner's
decode-ahead). Two requests racing for one uncached video share its decode and may
both encode it; the result is the same.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from harness.media.frames import FrameCache


@dataclass(frozen=True)
class EncodedFrames:
    """One video's sampled frames as base64 JPEG, and what they are."""

    jpegs: tuple[str, ...]
    indices: list[int]
    times_s: list[float]
    size: tuple[int, int]
    """(width, height) of every frame."""
    encoded_bytes: int
    """JPEG bytes in all, before base64."""

    def describe(self) -> dict[str, Any]:
        """What a record says of the frames sent."""
        return {
            "frames": len(self.jpegs),
            "frame_indices": self.indices,
            "frame_times_s": self.times_s,
            "frame_size": list(self.size),
            "encoded_bytes": self.encoded_bytes,
        }

    def video_uri(self) -> str:
        """vLLM's frame-list form: `data:video/jpeg;base64,<f1>,<f2>,...`."""
        return "data:video/jpeg;base64," + ",".join(self.jpegs)

    def image_uris(self) -> list[str]:
        return [f"data:image/jpeg;base64,{jpeg}" for jpeg in self.jpegs]


def encode_jpeg(rgb: np.ndarray, quantiser: int) -> bytes:
    """One RGB uint8 frame (H x W x 3) as JPEG at a fixed quantiser (2 best, 31 worst)."""
    import av

    height, width = rgb.shape[:2]
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = width - width % 2, height - height % 2
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 1)
    codec.options = {"qmin": str(quantiser), "qmax": str(quantiser)}
    frame = av.VideoFrame.from_ndarray(
        np.ascontiguousarray(rgb[: codec.height, : codec.width]), format="rgb24"
    )
    packets = codec.encode(frame.reformat(format="yuvj420p")) + codec.encode(None)
    return b"".join(bytes(packet) for packet in packets)


class EncodedFrameCache:
    """Thread-safe, byte-bounded cache of a video's sampled frames as base64 JPEG."""

    def __init__(self, *, fps: float, max_frames: int, quantiser: int, max_bytes: int) -> None:
        # Raw frames are not kept (max_bytes 0): concurrent callers still share one decode.
        self._frames = FrameCache(fps=fps, max_frames=max_frames, max_bytes=0)
        self.quantiser = quantiser
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._done: OrderedDict[str, EncodedFrames] = OrderedDict()
        self._bytes = 0

    def get(self, path: str) -> tuple[EncodedFrames, float]:
        """The video's encoded frames and the seconds this call spent getting them."""
        started = time.perf_counter()
        key = os.path.realpath(path)
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key], time.perf_counter() - started
        sampled = self._frames.get(path).sampled
        jpegs = [encode_jpeg(frame, self.quantiser) for frame in sampled.frames]
        height, width = sampled.frames.shape[1:3]
        encoded = EncodedFrames(
            jpegs=tuple(base64.b64encode(jpeg).decode("ascii") for jpeg in jpegs),
            indices=list(sampled.indices),
            times_s=sampled.times,
            size=(width - width % 2, height - height % 2),
            encoded_bytes=sum(map(len, jpegs)),
        )
        self._keep(key, encoded)
        return encoded, time.perf_counter() - started

    def warm(self, path: str) -> None:
        """Decode and encode the video now, unless it is cached."""
        self.get(path)

    def _keep(self, key: str, encoded: EncodedFrames) -> None:
        size = sum(map(len, encoded.jpegs))
        with self._lock:
            if size > self.max_bytes or key in self._done:
                return
            self._done[key] = encoded
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._done.popitem(last=False)
                self._bytes -= sum(map(len, evicted.jpegs))
