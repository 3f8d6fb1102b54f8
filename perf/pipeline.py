"""The runner's own costs: decode ahead of a fixed-time backend, and overhead per sample.

Decode ahead: a backend that stands in for one GPU (`FixedTimeBackend`: 0.2 s
per sample once the frames are there) over copies of the 720p 10 s clips, 3
questions per video, run three ways in one process: with every video decoded
before the run (decode-free: the throughput the backend alone allows), with
each sample prepared only when its turn comes (`decode_ahead` 0, what peers
do), and with the runner's decode ahead (the default). Copies, not links: the
frame cache keys on the real path, so every copy is decoded.

Overhead: the runner over an instant backend, process CPU time per sample
(every thread: the preparation pool, scoring, the record log).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from clips import Clip
from results import Column, Section
from workloads import FixedTimeBackend, InstantBackend, Questions, timed_run

from harness.run.settings import RunSettings

SERVICE_TIME = 0.2
QUESTIONS_PER_VIDEO = 3
COPIES = {"full": 6, "quick": 4}  # of each 10 s clip
TARGET_AHEAD = 0.9  # of the decode-free throughput
OVERHEAD_SAMPLES = {"full": 3000, "quick": 500}
TARGET_OVERHEAD_MS = 1.0


def measure(clips_directory: Path, *, quick: bool = False) -> list[Section]:
    mode = "quick" if quick else "full"
    with tempfile.TemporaryDirectory() as scratch:
        videos = _copies(clips_directory, Path(scratch), COPIES[mode])
        ahead = _decode_ahead(videos, Path(scratch))
        overhead = _overhead(OVERHEAD_SAMPLES[mode], Path(scratch))
    return [ahead, overhead]


def _copies(directory: Path, scratch: Path, copies: int) -> list[str]:
    videos = []
    for clip in (Clip(10, 2), Clip(10, 10)):
        for copy in range(copies):
            target = scratch / f"copy{copy}-{clip.path(directory).name}"
            shutil.copyfile(clip.path(directory), target)
            videos.append(str(target))
    return videos


def _decode_ahead(videos: list[str], scratch: Path) -> Section:
    count = len(videos) * QUESTIONS_PER_VIDEO
    benchmark = Questions(videos, per_video=QUESTIONS_PER_VIDEO, count=count)
    decoded = FixedTimeBackend(SERVICE_TIME)
    for video in videos:
        decoded.prepare(video)
    runs = [
        ("decode-free (every video decoded before the run)", decoded, RunSettings.decode_ahead),
        ("no decode ahead (each sample prepared at its turn)", FixedTimeBackend(SERVICE_TIME), 0),
        (
            f"decode ahead (default, {RunSettings.decode_ahead} samples)",
            FixedTimeBackend(SERVICE_TIME),
            RunSettings.decode_ahead,
        ),
    ]
    rows: list[dict[str, Any]] = []
    for name, backend, ahead in runs:
        settings = RunSettings(concurrency=1, decode_ahead=ahead)
        decoded_before = backend.frames.decodes
        progress, wall, _ = timed_run(backend, benchmark, scratch, settings)
        rows.append(
            {
                "name": name,
                "samples": count,
                "wall_s": round(wall, 3),
                "throughput": round(count / wall, 3),
                "decodes": backend.frames.decodes - decoded_before,
                "failed_samples": progress.failed,
            }
        )
    free = rows[0]["throughput"]
    for row in rows:
        row["of_decode_free"] = round(row["throughput"] / free, 3)
    ahead_row = rows[-1]
    ahead_row["target"] = f">= {TARGET_AHEAD} of decode-free"
    ahead_row["met"] = ahead_row["of_decode_free"] >= TARGET_AHEAD and not any(
        row["failed_samples"] for row in rows
    )
    return Section(
        key="decode_ahead",
        title="Decode ahead of a 0.2 s backend",
        note=(
            f"A stand-in for one GPU ({SERVICE_TIME:g} s per sample once its frames are"
            f" sampled, concurrency 1) over {len(videos)} copies of the 720p 10 s clips,"
            f" {QUESTIONS_PER_VIDEO} questions per video ({count} samples), each video"
            " sampled by OpenBMB's recipe once through the backend's frame cache. Throughput"
            " in samples per second; `of decode-free` is the share of the throughput with"
            " every video decoded before the run."
        ),
        columns=[
            Column("run", "name"),
            Column("samples", "samples"),
            Column("wall", "wall_s", "{:.2f} s"),
            Column("samples / s", "throughput", "{:.2f}"),
            Column("of decode-free", "of_decode_free", "{:.2f}"),
            Column("decodes in the run", "decodes"),
            Column("target", "target"),
            Column("met", "met"),
        ],
        rows=rows,
    )


def _overhead(count: int, scratch: Path) -> Section:
    benchmark = Questions(["/videos/unused.mp4"], per_video=count, count=count)
    rows = []
    for concurrency in (1, 8):
        settings = RunSettings(concurrency=concurrency)
        progress, wall, cpu = timed_run(InstantBackend(), benchmark, scratch, settings)
        cpu_ms = cpu / count * 1000
        rows.append(
            {
                "name": f"runner overhead, concurrency {concurrency}",
                "concurrency": concurrency,
                "samples": count,
                "cpu_ms_per_sample": round(cpu_ms, 3),
                "wall_ms_per_sample": round(wall / count * 1000, 3),
                "failed_samples": progress.failed,
                "target": f"<= {TARGET_OVERHEAD_MS:g} ms CPU",
                "met": cpu_ms <= TARGET_OVERHEAD_MS and progress.failed == 0,
            }
        )
    return Section(
        key="runner_overhead",
        title="Runner overhead per sample",
        note=(
            f"{count} samples through the runner over a backend that answers at once: the"
            " process CPU time of the run (all threads: preparation, scoring, the record log,"
            " flushed per sample) per sample. Wall time is shown alongside."
        ),
        columns=[
            Column("concurrency", "concurrency"),
            Column("samples", "samples"),
            Column("CPU / sample", "cpu_ms_per_sample", "{:.3f} ms"),
            Column("wall / sample", "wall_ms_per_sample", "{:.3f} ms"),
            Column("target", "target"),
            Column("met", "met"),
        ],
        rows=rows,
    )
