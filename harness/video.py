"""Reading videos with PyAV: probing, and frame sampling by MiniCPM-V 2.6's recipe.

`sample_indices` is the reference recipe as a pure function; `sample_frames`
decodes exactly those frames. Every unreadable input (missing, empty, not a
video, no video stream, corrupt or truncated) raises `VideoError`, whose text
names the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Generator
from contextlib import closing
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, NamedTuple

import av
import numpy as np

__all__ = [
    "SampledFrames",
    "VideoError",
    "VideoInfo",
    "probe",
    "sample_frames",
    "sample_indices",
]


class VideoError(Exception):
    """A video that cannot be read; `str()` is ``"{path}: {problem}"``."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.problem))


@dataclass(frozen=True)
class VideoInfo:
    """Facts about a video's first video stream.

    `fps` is the stream's average frame rate (what decord's `get_avg_fps`
    reports); `frame_count` is the container's frame count, or the number of
    video packets when the container does not say; `rotation` is the clockwise
    rotation in degrees (0, 90, 180 or 270 for the usual cases) that a player
    applies for display, as decord's `get_rotation` reports it. Decoded frames
    are never rotated.
    """

    path: str
    duration: float
    fps: float
    frame_count: int
    width: int
    height: int
    codec: str
    rotation: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SampledFrames(NamedTuple):
    """Decoded frames (RGB uint8, frames x H x W x 3) and their frame indices."""

    frames: np.ndarray
    indices: list[int]


def sample_indices(
    frame_count: int, avg_fps: float, *, fps: float = 1.0, max_frames: int = 64
) -> list[int]:
    """Frame indices chosen by OpenBMB's MiniCPM-V 2.6 video recipe.

    The model card's `encode_video` opens the file with decord's `VideoReader`,
    takes every ``round(vr.get_avg_fps() / 1)``-th frame of ``range(len(vr))``
    (one per second) and, when that gives more than ``MAX_NUM_FRAMES = 64``,
    keeps 64 of them with ``uniform_sample`` (the middle of 64 equal bins):

        gap = len(l) / n; idxs = [int(i * gap + gap / 2) for i in range(n)]

    This reproduces it exactly (Python's `round`, so 29.97 fps gives a step of
    30 and 2.5 gives 2), with `fps` and `max_frames` as parameters and a step
    of at least 1.
    """
    if frame_count < 0:
        raise ValueError(f"frame_count must be >= 0, got {frame_count}")
    if not (math.isfinite(avg_fps) and avg_fps > 0):
        raise ValueError(f"avg_fps must be a positive number, got {avg_fps}")
    _check_sampling(fps, max_frames)
    step = max(1, round(avg_fps / fps))
    idx = list(range(0, frame_count, step))
    if len(idx) > max_frames:
        gap = len(idx) / max_frames
        idx = [idx[int(i * gap + gap / 2)] for i in range(max_frames)]
    return idx


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Duration, frame rate, frame count, size, codec and rotation of a video.

    Decodes the first frame (rotation is only exposed on decoded frames in
    PyAV 18), so a video with no decodable frame raises `VideoError`.
    """
    name = _check_file(path)
    first: av.VideoFrame | None = None
    with _open(name) as container:
        stream = _video_stream(container, name)
        demuxed = stream.frames <= 0  # the count comes from reading every packet
        fps, frame_count, duration = _stream_facts(container, stream, name)
        codec = stream.codec_context.name
        width, height = stream.codec_context.width, stream.codec_context.height
        tag = stream.metadata.get("rotate")
        if not demuxed:
            first = _first_frame(container, stream, name)
    if demuxed:
        with _open(name) as container:
            first = _first_frame(container, _video_stream(container, name), name)
    if first is None:
        raise VideoError(name, "no decodable video frames")
    return VideoInfo(
        path=name,
        duration=duration,
        fps=fps,
        frame_count=frame_count,
        width=width or first.width,
        height=height or first.height,
        codec=codec,
        rotation=_rotation(tag, first),
    )


def sample_frames(
    path: str | os.PathLike[str], *, fps: float = 1.0, max_frames: int = 64
) -> SampledFrames:
    """Decode the frames that `sample_indices` picks, as one RGB uint8 array.

    Frames are decoded in presentation order with threaded decoding; only the
    sampled ones are converted to RGB, and decoding stops after the last one.
    If the video ends before a sampled index is reached (fewer frames than the
    container claims), this raises `VideoError` rather than sampling from what
    decoded.
    """
    _check_sampling(fps, max_frames)
    name = _check_file(path)
    with _open(name) as container:
        stream = _video_stream(container, name)
        avg_fps, frame_count, _ = _stream_facts(container, stream, name)
    indices = sample_indices(frame_count, avg_fps, fps=fps, max_frames=max_frames)
    if not indices:
        raise VideoError(name, "no video frames")
    wanted = set(indices)
    last = indices[-1]
    picked: dict[int, np.ndarray] = {}
    decoded = 0
    with _open(name) as container:
        stream = _video_stream(container, name)
        stream.thread_type = "AUTO"
        width = stream.codec_context.width or None
        height = stream.codec_context.height or None
        with closing(_decode(container, stream, name)) as frames:
            for index, frame in enumerate(frames):
                decoded = index + 1
                if index in wanted:
                    if frame.is_corrupt:
                        raise VideoError(name, f"frame {index} decoded with errors (corrupt data)")
                    if width is None or height is None:
                        width, height = frame.width, frame.height
                    picked[index] = frame.to_ndarray(format="rgb24", width=width, height=height)
                if index >= last:
                    break
    missing = [i for i in indices if i not in picked]
    if missing:
        raise VideoError(
            name,
            f"only {decoded} of the {frame_count} frames the container claims could be decoded;"
            f" {len(missing)} sampled frame(s) from index {missing[0]} on were not reached",
        )
    return SampledFrames(np.stack([picked[i] for i in indices]), list(indices))


def _check_sampling(fps: float, max_frames: int) -> None:
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")


def _check_file(path: str | os.PathLike[str]) -> str:
    name = os.fspath(path)
    if not os.path.exists(name):
        raise VideoError(name, "no such file")
    if not os.path.isfile(name):
        raise VideoError(name, "not a regular file")
    if os.path.getsize(name) == 0:
        raise VideoError(name, "empty file (0 bytes)")
    return name


def _open(name: str) -> av.container.InputContainer:
    try:
        return av.open(name, mode="r")
    except av.FFmpegError as exc:
        raise VideoError(name, f"cannot open as a video: {_message(exc)}") from exc
    except OSError as exc:
        raise VideoError(name, f"cannot open: {exc.strerror or exc}") from exc


def _video_stream(container: av.container.InputContainer, name: str) -> av.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        raise VideoError(name, f"no video stream (streams: {kinds})")
    return container.streams.video[0]


def _stream_facts(
    container: av.container.InputContainer, stream: av.VideoStream, name: str
) -> tuple[float, int, float]:
    """(average fps, frame count, duration in seconds).

    When the container does not store a frame count (Matroska, WebM, ...), the
    video packets are counted by demuxing every stream without decoding, and a
    file whose packets stop well short of the container's duration is reported
    as truncated instead of being sampled as if it were shorter.
    """
    container_duration = container.duration / av.time_base if container.duration else None
    duration = 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container_duration is not None:
        duration = container_duration
    rate: Fraction | None = stream.average_rate or stream.guessed_rate
    frame_count = stream.frames
    if frame_count <= 0:
        frame_count, covered = _count_packets(container, stream, name)
        if rate and container_duration:
            start = (container.start_time or 0) / av.time_base
            tolerance = max(2 / float(rate), 0.02 * container_duration)
            if covered - start < container_duration - tolerance:
                raise VideoError(
                    name,
                    f"truncated: packets end at {covered - start:.2f} s but the container's"
                    f" duration is {container_duration:.2f} s",
                )
    if frame_count == 0:
        raise VideoError(name, "no video frames")
    if rate:
        fps = float(rate)
    elif duration > 0:
        fps = frame_count / duration
    else:
        raise VideoError(name, "frame rate unknown")
    if duration <= 0:
        duration = frame_count / fps
    return fps, frame_count, duration


def _count_packets(
    container: av.container.InputContainer, stream: av.VideoStream, name: str
) -> tuple[int, float]:
    """(video packets with data, latest packet end over all streams in seconds)."""
    count = 0
    covered = 0.0
    try:
        for packet in container.demux():
            if packet.size == 0:
                continue
            if packet.stream_index == stream.index:
                count += 1
            if packet.pts is not None and packet.time_base is not None:
                end = (packet.pts + (packet.duration or 0)) * packet.time_base
                covered = max(covered, float(end))
    except av.FFmpegError as exc:
        raise VideoError(name, f"corrupt data while reading packets: {_message(exc)}") from exc
    return count, covered


def _decode(
    container: av.container.InputContainer, stream: av.VideoStream, name: str
) -> Generator[av.VideoFrame, None, None]:
    """Frames of `stream` in presentation order; decoding errors become `VideoError`."""
    index = 0
    try:
        for frame in container.decode(stream):
            yield frame
            index += 1
    except av.FFmpegError as exc:
        raise VideoError(
            name, f"corrupt data while decoding near frame {index}: {_message(exc)}"
        ) from exc


def _first_frame(
    container: av.container.InputContainer, stream: av.VideoStream, name: str
) -> av.VideoFrame | None:
    stream.thread_type = "AUTO"
    with closing(_decode(container, stream, name)) as frames:
        return next(frames, None)


def _rotation(tag: str | None, frame: av.VideoFrame) -> int:
    """Clockwise display rotation in [0, 360), from the `rotate` tag or the display matrix."""
    degrees = 0.0
    if tag:
        try:
            degrees = float(tag)
        except ValueError:
            degrees = 0.0
    if not degrees:
        # VideoFrame.rotation is the display matrix's counter-clockwise angle.
        degrees = -float(frame.rotation or 0)
    return round(degrees) % 360


def _message(exc: BaseException) -> str:
    strerror = getattr(exc, "strerror", None)
    return strerror or str(exc)
