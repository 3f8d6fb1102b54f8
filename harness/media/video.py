"""Reading videos with PyAV: probing, and frame sampling by MiniCPM-V 2.6's recipe.

`sample_indices` is the reference recipe as a pure function; `sample_frames`
decodes exactly those frames, seeking past the rest and decoding runs of them in
parallel, and checks each frame against the packets' timestamps. Every unreadable
input (missing, empty, not a video, no video stream, corrupt or truncated) raises
`VideoError`, whose text names the file.
"""

from __future__ import annotations

import bisect
import math
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import av
import numpy as np

from harness.errors import HarnessError
from harness.files import not_a_file

__all__ = [
    "SampledFrames",
    "VideoError",
    "VideoInfo",
    "probe",
    "sample_frames",
    "sample_indices",
]


class VideoError(HarnessError):
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
    """Decoded frames (RGB uint8, frames x H x W x 3), their frame indices, and the
    video's average frame rate (0 when not known), which places them in time."""

    frames: np.ndarray
    indices: list[int]
    avg_fps: float = 0.0

    @property
    def times(self) -> list[float]:
        """Each frame's time in seconds, as the recipe places it (index / average fps)."""
        return [round(i / self.avg_fps, 3) for i in self.indices] if self.avg_fps else []


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

    Frame i is the i-th frame a sequential decode shows, as in decord. The video's
    packets are read first, without decoding, for each frame's timestamp and the
    keyframes. The sampled frames are then cut into runs, each decoded from the
    keyframe before its first frame: a new run (a seek) starts wherever a keyframe
    lies more than a seek's cost (`_SEEK_COST_FRAMES`) past the frame after the
    previous sampled one; otherwise decoding goes on through. Runs are decoded in
    parallel, one decoder per CPU (a single run gets FFmpeg's frame threads); H.264
    frames that are neither sampled nor referenced by other frames are not decoded
    at all, and only sampled frames are converted to RGB. Every decoded frame is
    checked against the timestamps read first; when they disagree (no timestamps,
    duplicates, a seek that lands wrong, a frame flagged corrupt), the video is
    decoded sequentially instead, so the frames are a sequential decode's.

    If the video has fewer frames than the container claims and a sampled index is
    not among them, this raises `VideoError` rather than sampling from what is there.
    """
    _check_sampling(fps, max_frames)
    name = _check_file(path)
    with _open(name) as container:
        stream = _video_stream(container, name)
        timeline = _scan(container, stream, name)
        avg_fps, frame_count, _ = _stream_facts(container, stream, name, timeline)
        size = (stream.codec_context.width, stream.codec_context.height)
    indices = sample_indices(frame_count, avg_fps, fps=fps, max_frames=max_frames)
    if not indices:
        raise VideoError(name, "no video frames")
    if timeline.seekable:
        if indices[-1] >= len(timeline.pts):
            missing = [i for i in indices if i >= len(timeline.pts)]
            raise VideoError(
                name,
                f"only {len(timeline.pts)} of the {frame_count} frames the container"
                f" claims are in the file; {len(missing)} sampled frame(s) from index"
                f" {missing[0]} on were not reached",
            )
        frames = _Frames(indices, size)
        try:
            _decode_runs(name, timeline, frames)
            return frames.result()._replace(avg_fps=avg_fps)
        except _Inexact:
            pass
    return _decode_sequentially(name, indices, frame_count)._replace(avg_fps=avg_fps)


_SEEK_COST_FRAMES = 8
"""What a seek costs, in frames decoded: the decoder's flush, refilling its frame
threads and B-frame reordering. A keyframe nearer than this is decoded through."""

_SKIP_NONREF_CODECS = frozenset({"h264"})
"""Codecs whose non-reference frames can be left undecoded without changing any
other frame: an H.264 picture with nal_ref_idc 0 is never used for prediction
(HEVC's sub-layer non-reference pictures can be, by higher temporal layers)."""


class _Inexact(Exception):
    """Timestamps and decoded frames disagree: the seeking path cannot vouch for a frame."""


@dataclass(frozen=True)
class _Timeline:
    """A video stream's frames as its packets describe them, read without decoding.

    `pts` are the presentation timestamps of the frames shown, in presentation order,
    so the i-th frame of a sequential decode carries `pts[i]`; `keyframes` are the
    ascending timestamps of the packets decoding can start from, hidden ones (an edit
    list can hide the start of a GOP) included; `packets` counts the video packets
    with data that are shown and `covered` is where the last packet of any stream
    ends, in seconds. `seekable` says the timestamps can be trusted to name frames:
    every packet has its own, and a keyframe comes no later than frame 0.
    """

    pts: list[int]
    keyframes: list[int]
    packets: int
    covered: float
    index_of: dict[int, int] = field(init=False, repr=False)  # frame index by timestamp

    def __post_init__(self) -> None:
        object.__setattr__(self, "index_of", {pts: i for i, pts in enumerate(self.pts)})

    @property
    def seekable(self) -> bool:
        return (
            bool(self.pts)
            and len(self.pts) == self.packets
            and len(self.index_of) == len(self.pts)
            and bool(self.keyframes)
            and self.keyframes[0] <= self.pts[0]
        )


class _Frames:
    """The output array, filled as the sampled frames are decoded (by several threads)."""

    def __init__(self, indices: list[int], size: tuple[int, int]) -> None:
        self.indices = indices
        self.slots = {index: slot for slot, index in enumerate(indices)}
        self.size = size if all(size) else None
        self.array: np.ndarray | None = None
        self.filled: set[int] = set()
        self._lock = threading.Lock()

    def put(self, index: int, frame: av.VideoFrame) -> None:
        """Convert `frame`, sampled index `index`, to RGB in its place."""
        with self._lock:
            self.size = self.size or (frame.width, frame.height)
        width, height = self.size
        rgb = frame.to_ndarray(format="rgb24", width=width, height=height)
        with self._lock:
            if self.array is None:
                self.array = np.empty((len(self.indices), *rgb.shape), np.uint8)
            self.array[self.slots[index]] = rgb
            self.filled.add(index)

    def missing(self) -> list[int]:
        return [i for i in self.indices if i not in self.filled]

    def result(self) -> SampledFrames:
        assert self.array is not None and not self.missing()
        return SampledFrames(self.array, list(self.indices))


def _decode_packet(codec: av.VideoCodecContext, packet: av.Packet) -> list[av.VideoFrame]:
    """Send one packet to the decoder and take the frames it gives back (a test hook)."""
    return codec.decode(packet)


def _plan(timeline: _Timeline, indices: list[int]) -> list[tuple[int, list[int]]]:
    """Runs of sampled indices as (the keyframe timestamp to seek to, the indices).

    A new run starts when the keyframe before an index lies more than a seek's cost
    past the frame after the previous index; otherwise decoding goes on through.
    """
    runs: list[tuple[int, list[int]]] = []
    after = 0
    for index in indices:
        key = timeline.keyframes[bisect.bisect_right(timeline.keyframes, timeline.pts[index]) - 1]
        if not runs or bisect.bisect_left(timeline.pts, key) - after > _SEEK_COST_FRAMES:
            runs.append((key, [index]))
        else:
            runs[-1][1].append(index)
        after = index + 1
    return runs


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _decode_runs(name: str, timeline: _Timeline, frames: _Frames) -> None:
    """Decode the runs of `_plan` on up to one worker per CPU, each with its own decoder.

    Raises `_Inexact` when a decoded frame does not match the timeline.
    """
    runs: queue.SimpleQueue[tuple[int, list[int]]] = queue.SimpleQueue()
    planned = _plan(timeline, frames.indices)
    for run in planned:
        runs.put(run)
    cpus = _cpus()
    workers = min(cpus, len(planned))
    threads = 0 if workers == 1 else max(1, cpus // workers)  # 0: as many as FFmpeg likes
    failed = threading.Event()

    def work() -> None:
        try:
            _decode_worker(name, timeline, runs, frames, threads, failed)
        except BaseException:
            failed.set()
            raise

    if workers == 1:
        work()
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="sample-frames") as pool:
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()


def _decode_worker(
    name: str,
    timeline: _Timeline,
    runs: queue.SimpleQueue[tuple[int, list[int]]],
    frames: _Frames,
    threads: int,
    failed: threading.Event,
) -> None:
    """Take runs off `runs` until it is empty (or another worker failed), decoding each."""
    with _open(name) as container:
        stream = _video_stream(container, name)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        skip_nonref = stream.codec_context.name in _SKIP_NONREF_CODECS
        while not failed.is_set():
            try:
                key, run = runs.get_nowait()
            except queue.Empty:
                return
            wanted = {timeline.pts[index] for index in run}
            try:
                container.seek(key, stream=stream, backward=True)
            except av.FFmpegError as exc:
                raise _Inexact from exc
            try:
                _decode_run(container, stream, timeline, wanted, frames, skip_nonref=skip_nonref)
            except av.FFmpegError as exc:
                raise VideoError(
                    name, f"corrupt data while decoding near frame {run[0]}: {_message(exc)}"
                ) from exc
            if wanted:
                raise _Inexact


def _decode_run(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    timeline: _Timeline,
    wanted: set[int],
    frames: _Frames,
    *,
    skip_nonref: bool,
) -> None:
    """Decode on from the container's position until the last timestamp in `wanted`.

    Each wanted frame is put into `frames` and its timestamp taken out of `wanted`;
    with `skip_nonref`, packets of other frames are decoded only if they are referenced.
    """
    codec = stream.codec_context
    index_of = timeline.index_of
    last = max(wanted)
    previous: int | None = None
    for packet in container.demux(stream):
        if skip_nonref:
            needed = packet.size == 0 or packet.pts in wanted
            codec.skip_frame = "DEFAULT" if needed else "NONREF"
        for frame in _decode_packet(codec, packet):
            pts = frame.pts
            if pts not in index_of or (previous is not None and pts <= previous):
                raise _Inexact
            previous = pts
            if pts in wanted:
                if frame.is_corrupt:
                    raise _Inexact
                frames.put(index_of[pts], frame)
                wanted.discard(pts)
            if pts >= last:
                return


def _decode_sequentially(name: str, indices: list[int], frame_count: int) -> SampledFrames:
    """Decode every frame up to the last sampled one, counting them: the plain way."""
    wanted = set(indices)
    index = 0
    with _open(name) as container:
        stream = _video_stream(container, name)
        stream.thread_type = "AUTO"
        codec = stream.codec_context
        frames = _Frames(indices, (stream.codec_context.width, stream.codec_context.height))
        try:
            for packet in container.demux(stream):
                for frame in _decode_packet(codec, packet):
                    if index in wanted:
                        if frame.is_corrupt:
                            raise VideoError(
                                name, f"frame {index} decoded with errors (corrupt data)"
                            )
                        frames.put(index, frame)
                    index += 1
                    if index > indices[-1]:
                        return frames.result()
        except av.FFmpegError as exc:
            raise VideoError(
                name, f"corrupt data while decoding near frame {index}: {_message(exc)}"
            ) from exc
    missing = frames.missing()
    raise VideoError(
        name,
        f"only {index} of the {frame_count} frames the container claims could be decoded;"
        f" {len(missing)} sampled frame(s) from index {missing[0]} on were not reached",
    )


def _check_sampling(fps: float, max_frames: int) -> None:
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")


def _check_file(path: str | os.PathLike[str]) -> str:
    name = os.fspath(path)
    reason = not_a_file(Path(name))
    if reason:
        raise VideoError(name, reason)
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
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise VideoError(name, "no decoder for its video codec in this FFmpeg build")
    return stream


def _stream_facts(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    name: str,
    timeline: _Timeline | None = None,
) -> tuple[float, int, float]:
    """(average fps, frame count, duration in seconds).

    When the container does not store a frame count (Matroska, WebM, ...), the
    video packets are counted by demuxing every stream without decoding (or taken
    from `timeline` when it has been read), and a file whose packets stop well
    short of the container's duration is reported as truncated instead of being
    sampled as if it were shorter.
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
        if timeline is None:
            timeline = _scan(container, stream, name)
        frame_count, covered = timeline.packets, timeline.covered
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


def _scan(container: av.container.InputContainer, stream: av.VideoStream, name: str) -> _Timeline:
    """Read every packet of every stream, without decoding, into a `_Timeline`."""
    pts: list[int] = []
    keys: list[int] = []
    packets = 0
    ends: dict[int, int] = {}  # stream index -> latest packet end, in its time base
    try:
        for packet in container.demux():
            if packet.size == 0:
                continue
            index, value = packet.stream_index, packet.pts
            if value is not None:
                ends[index] = max(ends.get(index, value), value + (packet.duration or 0))
            if index != stream.index:
                continue
            if value is not None and packet.is_keyframe:
                keys.append(value)
            if packet.is_discard:
                continue
            packets += 1
            if value is not None:
                pts.append(value)
    except av.FFmpegError as exc:
        raise VideoError(name, f"corrupt data while reading packets: {_message(exc)}") from exc
    bases = {index: container.streams[index].time_base for index in ends}
    covered = max((float(ends[i] * base) for i, base in bases.items() if base), default=0.0)
    return _Timeline(sorted(pts), sorted(keys), packets, covered)


def _first_frame(
    container: av.container.InputContainer, stream: av.VideoStream, name: str
) -> av.VideoFrame | None:
    stream.thread_type = "AUTO"
    codec = stream.codec_context
    try:
        for packet in container.demux(stream):
            for frame in _decode_packet(codec, packet):
                return frame
    except av.FFmpegError as exc:
        problem = f"corrupt data while decoding near frame 0: {_message(exc)}"
        raise VideoError(name, problem) from exc
    return None


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
