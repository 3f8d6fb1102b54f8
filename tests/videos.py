"""Test helpers: write small videos with PyAV whose frames say which index they are.

Each frame produced by `index_pattern` shows its index in binary as vertical
black/white bars (most significant bit on the left), 16 pixels wide so they sit
on macroblock boundaries and survive lossy coding; `read_index` reads it back.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BITS = 10
BAR = 16
WIDTH = BITS * BAR
HEIGHT = 96

Frame = Callable[[int], np.ndarray]


def index_pattern(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """An RGB frame showing `index` (< 2**BITS) as BITS black/white bars."""
    if not 0 <= index < 2**BITS:
        raise ValueError(f"index {index} does not fit in {BITS} bits")
    frame = np.zeros((height, width, 3), np.uint8)
    bar = width // BITS
    for bit in range(BITS):
        if index >> (BITS - 1 - bit) & 1:
            frame[:, bit * bar : (bit + 1) * bar] = 255
    return frame


def read_index(frame: np.ndarray) -> int:
    """The index that `index_pattern` drew into `frame` (after lossy coding)."""
    bar = frame.shape[1] // BITS
    index = 0
    for bit in range(BITS):
        level = frame[:, bit * bar + 2 : (bit + 1) * bar - 2].mean()
        index = index << 1 | int(level > 127)
    return index


def write_video(
    path: Path,
    frame_count: int,
    fps: float | Fraction = 30,
    *,
    frame: Frame = index_pattern,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    rotation: int | None = None,
    ticks: Callable[[int], int] | None = None,
) -> Path:
    """Encode `frame(i)` for i in range(frame_count) at `fps`; returns `path`.

    `rotation` is a counter-clockwise display rotation written as the
    container's display matrix (PyAV's `set_display_rotation`). `ticks(i)` stamps
    frame i at `ticks(i) / (4 * fps)` seconds instead of `i / fps`, for irregular
    (variable frame rate) timestamps; it must increase.
    """
    rate = Fraction(fps).limit_denominator(1001)
    time_base = 1 / rate if ticks is None else 1 / (4 * rate)
    first = frame(0)
    height, width = first.shape[:2]
    with av.open(str(path), mode="w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10", "preset": "ultrafast"} if options is None else options
        stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(frame_count):
            image = first if i == 0 else frame(i)
            video_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            video_frame.pts = i if ticks is None else ticks(i)
            video_frame.time_base = time_base
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    return path


def hide_first_frames(source: Path, target: Path, count: int) -> Path:
    """Remux `source` so that an MP4 edit list hides its first `count` frames.

    The packets all stay in the file and the container still counts them, but
    decoding shows `count` frames fewer: a container frame count that is wrong.
    """
    with av.open(str(source)) as reader, av.open(str(target), mode="w") as writer:
        stream = reader.streams.video[0]
        copy = writer.add_stream_from_template(stream)
        assert stream.average_rate is not None and stream.time_base is not None
        shift = round(count / (stream.average_rate * stream.time_base))
        for packet in reader.demux(stream):
            if packet.dts is None:
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = copy
            writer.mux(packet)
    return target


def write_audio(path: Path, seconds: float = 1.0, codec: str = "aac", rate: int = 48000) -> Path:
    """An audio-only file: a sine tone encoded with `codec`."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        samples = int(seconds * rate)
        chunk = 1024
        for start in range(0, samples, chunk):
            t = np.arange(start, min(start + chunk, samples)) / rate
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            audio = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
            audio.sample_rate = rate
            audio.pts = start
            container.mux(stream.encode(audio))
        container.mux(stream.encode(None))
    return path
