"""Generated 720p videos for the sampling measurements, cached across runs.

A simple synthetic scene (a textured background panning under a moving box,
encoded with libx264 `superfast`, CRF 23, 3 B-frames, an IDR frame every `gop_s`
seconds exactly) at 1280x720 and 30 fps, about 2.7 Mbit/s: H.264 as video sites
serve it. The 10 s and 2 min clips are encoded; the 30 min clip repeats the 2 min
one 15 times by copying its packets (each copy starts on an IDR frame, so the
stream stays valid), which spares half an hour of encoding on a small machine and
decodes at the same cost per frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from harness.media.cache import cache_root

WIDTH, HEIGHT, FPS = 1280, 720, 30
VERSION = 1  # bump when the scene or the encoding changes: the cache is keyed on it
BASE_SECONDS = 120


@dataclass(frozen=True)
class Clip:
    """A generated video: `seconds` long with a keyframe every `gop_s` seconds."""

    seconds: int
    gop_s: int

    @property
    def name(self) -> str:
        length = f"{self.seconds // 60} min" if self.seconds >= 60 else f"{self.seconds} s"
        return f"720p {length}, {self.gop_s} s GOP"

    def path(self, directory: Path) -> Path:
        return directory / f"v{VERSION}-720p-{self.seconds}s-gop{self.gop_s}s.mp4"


def default_directory() -> Path:
    """Where clips are kept: the harness cache (`$VQA_HARNESS_CACHE`), under perf-clips."""
    return cache_root() / "perf-clips"


def ensure(clip: Clip, directory: Path) -> float | None:
    """Generate `clip` under `directory` unless it is there; the seconds it took, or None."""
    path = clip.path(directory)
    if path.exists():
        return None
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    partial = path.with_suffix(".partial.mp4")
    if clip.seconds > BASE_SECONDS and clip.seconds % BASE_SECONDS == 0:
        base = Clip(BASE_SECONDS, clip.gop_s)
        ensure(base, directory)
        _repeat(base.path(directory), partial, clip.seconds // BASE_SECONDS)
    else:
        _encode(partial, clip)
    partial.replace(path)
    return time.perf_counter() - started


def _encode(path: Path, clip: Clip) -> None:
    rng = np.random.default_rng(VERSION)
    luma = _texture(rng, HEIGHT + 400, WIDTH + 800)
    chroma = [_texture(rng, HEIGHT // 2 + 200, WIDTH // 2 + 400) for _ in range(2)]
    image = np.empty((HEIGHT * 3 // 2, WIDTH), np.uint8)
    quarter = HEIGHT * WIDTH // 4
    keyint = clip.gop_s * FPS
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {
            "preset": "superfast",
            "crf": "23",
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0",
        }
        for i in range(clip.seconds * FPS):
            x, y = (3 * i) % 800, int(200 + 180 * np.sin(i / 50))
            image[:HEIGHT] = luma[y : y + HEIGHT, x : x + WIDTH]
            for plane, texture in enumerate(chroma):
                start = HEIGHT * WIDTH + plane * quarter
                view = image.reshape(-1)[start : start + quarter].reshape(HEIGHT // 2, WIDTH // 2)
                view[:] = texture[y // 2 : y // 2 + HEIGHT // 2, x // 2 : x // 2 + WIDTH // 2]
            box = (7 * i) % (WIDTH - 100)
            image[300:400, box : box + 100] = 235
            frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _texture(rng: np.random.Generator, height: int, width: int, cell: int = 16) -> np.ndarray:
    """Smooth random blobs: noise on a coarse grid, blown up and box-blurred."""
    coarse = rng.integers(0, 256, (height // cell + 2, width // cell + 2)).astype(np.float32)
    image = np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:height, :width]
    kernel = np.ones(cell, np.float32) / cell
    image = np.apply_along_axis(np.convolve, 1, image, kernel, "same")
    image = np.apply_along_axis(np.convolve, 0, image, kernel, "same")
    return image.astype(np.uint8)


def _repeat(source: Path, target: Path, times: int) -> None:
    """Copy the packets of `source` `times` times in a row into `target`."""
    with av.open(str(target), mode="w") as writer:
        copy: av.VideoStream | None = None
        for repeat in range(times):
            with av.open(str(source)) as reader:
                stream = reader.streams.video[0]
                assert stream.time_base is not None
                copy = copy or writer.add_stream_from_template(stream)
                shift = repeat * round(BASE_SECONDS / stream.time_base)
                for packet in reader.demux(stream):
                    if packet.dts is None:
                        continue
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = copy
                    writer.mux(packet)
