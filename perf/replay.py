"""Replay time of a recorded 100-sample fal run, as CI's regression check replays one.

The run is recorded here, against the protocol emulator: 100 questions, 3 per
video, about 34 small local videos, so that it holds what the committed replay
set holds (storage token, uploads once per video, submits, status polls over
a 0.5 s service time, results). It is then replayed through the real `fal`
backend and runner at the backend's own concurrency, no network and no key:
the time counted is loading the cassette and the run, as `run --replay` spends
it before writing its report.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from remote import emulated_fal
from results import Column, Section
from workloads import Questions, timed_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from videos import write_video

from backends.fal import FalBackend
from harness.protocols import HttpMode
from harness.run.recording import CASSETTE, http_recording
from harness.run.settings import RunSettings

SAMPLES = 100
QUESTIONS_PER_VIDEO = 3
SERVICE_TIME = 0.5
RECORD_CONCURRENCY = 16
TARGET_S = 2.0


def measure(*, quick: bool = False) -> Section:
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        benchmark = _benchmark(scratch_path / "videos")
        cassette = scratch_path / "cassette"
        with emulated_fal(SERVICE_TIME), http_recording("record", cassette, source="perf"):
            recorded, record_wall, _ = timed_run(
                _backend(scratch_path, "record"),
                benchmark,
                scratch_path,
                RunSettings(concurrency=RECORD_CONCURRENCY),
            )
        walls = [_replay(benchmark, cassette, scratch_path) for _ in range(repeats)]
        text = (cassette / CASSETTE).read_text()
    wall = statistics.median(walls)
    row: dict[str, Any] = {
        "name": f"replay of a {SAMPLES}-sample run",
        "samples": SAMPLES,
        "videos": len(benchmark.videos),
        "interactions": len(
            yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["interactions"]
        ),
        "cassette_mb": round(len(text.encode()) / 1e6, 2),
        "record_s": round(record_wall, 2),
        "recorded_failures": recorded.failed,
        "replay_s": round(wall, 3),
        "replay_runs_s": [round(w, 3) for w in walls],
        "target": f"<= {TARGET_S:g} s",
        "met": wall <= TARGET_S and recorded.failed == 0,
    }
    return Section(
        key="replay",
        title="Replay of a recorded run",
        note=(
            f"{SAMPLES} fal samples ({QUESTIONS_PER_VIDEO} questions per video, local videos"
            f" uploaded once each), recorded here against the emulator at concurrency"
            f" {RECORD_CONCURRENCY} with {SERVICE_TIME:g} s service time, then replayed with no"
            f" network and no key at the fal backend's own concurrency: loading the cassette"
            f" and running, median of {repeats}."
        ),
        columns=[
            Column("samples", "samples"),
            Column("videos", "videos"),
            Column("interactions", "interactions"),
            Column("cassette", "cassette_mb", "{:.1f} MB"),
            Column("recorded in", "record_s", "{:.1f} s"),
            Column("replay", "replay_s", "{:.2f} s"),
            Column("target", "target"),
            Column("met", "met"),
        ],
        rows=[row],
    )


def _benchmark(directory: Path) -> Questions:
    """Small clips, each of its own length, so that each is its own upload."""
    directory.mkdir()
    count = -(-SAMPLES // QUESTIONS_PER_VIDEO)
    videos = [str(write_video(directory / f"clip{i}.mp4", 10 + i, fps=10)) for i in range(count)]
    return Questions(videos, per_video=QUESTIONS_PER_VIDEO, count=SAMPLES)


def _backend(scratch: Path, mode: HttpMode) -> FalBackend:
    backend = FalBackend(upload_cache=scratch / "uploads.json")
    backend.use_http_mode(mode)
    return backend


def _replay(benchmark: Questions, cassette: Path, scratch: Path) -> float:
    started = time.perf_counter()
    with http_recording("replay", cassette):
        backend = _backend(scratch, "replay")
        progress, _, _ = timed_run(
            backend, benchmark, scratch, RunSettings(concurrency=backend.default_concurrency)
        )
    if progress.failed:
        raise RuntimeError(f"the replay failed {progress.failed} of {SAMPLES} samples")
    return time.perf_counter() - started
