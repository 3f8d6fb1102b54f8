"""The `openai` backend and runner against the vLLM emulator of the tests.

Two measurements, each with a 0.5 s simulated service time per request: concurrency
efficiency at 32 requests in flight (`frames=server`, a video URL: no client work), and
with `frames=recipe` over copies of the 720p 10 s clips, how long each sample waited
for its frames (`prepare_wait`) once the server was busy (the first `concurrency`
samples, which start before anything could be prepared ahead, are left out). One
request in flight: on a 2-CPU machine a 720p 10 s clip takes about 1 s to decode,
sample and encode, and its 3 questions 1.5 s of service, so more requests in flight
would outrun the decode-ahead of any client on such a machine.
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from clips import Clip, ensure
from pipeline import _copies
from results import Column, Section
from workloads import Questions, timed_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the vLLM emulator lives with the tests

from vllm_emulator import VLLMEmulator  # noqa: E402

from backends.openai_compat import OpenAIBackend  # noqa: E402
from harness.run.settings import RunSettings  # noqa: E402
from harness.run.store import read_records  # noqa: E402

SERVICE_TIME = 0.5
CONCURRENCY, TARGET_EFFICIENCY = 32, 0.9
RECIPE_CONCURRENCY, TARGET_WAIT_S = 1, 0.05
VIDEO_URL = "https://example.com/clip.mp4"
SAMPLES = {"full": 320, "quick": 96}
COPIES = {"full": 4, "quick": 2}
QUESTIONS_PER_VIDEO = 3


def _efficiency(samples: int) -> dict[str, Any]:
    benchmark = Questions([VIDEO_URL], per_video=samples, count=samples)
    with (
        tempfile.TemporaryDirectory() as scratch,
        VLLMEmulator(service_time=SERVICE_TIME).installed(),
    ):
        backend = OpenAIBackend(frames="server", replica_concurrency=CONCURRENCY)
        progress, wall, _ = timed_run(
            backend, benchmark, Path(scratch), RunSettings(concurrency=CONCURRENCY)
        )
    ideal = math.ceil(samples / CONCURRENCY) * SERVICE_TIME
    return {
        "name": f"frames=server, concurrency {CONCURRENCY}",
        "samples": samples,
        "wall_s": round(wall, 3),
        "value": round(ideal / wall, 3),
        "unit": "efficiency (ideal / wall)",
        "failed_samples": progress.failed,
        "target": f">= {TARGET_EFFICIENCY}",
        "met": ideal / wall >= TARGET_EFFICIENCY and progress.failed == 0,
    }


def _prepare_wait(clips_directory: Path, copies: int) -> dict[str, Any]:
    for clip in (Clip(10, 2), Clip(10, 10)):
        ensure(clip, clips_directory)
    with (
        tempfile.TemporaryDirectory() as scratch,
        VLLMEmulator(service_time=SERVICE_TIME).installed(),
    ):
        videos = _copies(clips_directory, Path(scratch), copies)
        count = len(videos) * QUESTIONS_PER_VIDEO
        benchmark = Questions(videos, per_video=QUESTIONS_PER_VIDEO, count=count)
        backend = OpenAIBackend(frames="recipe", replica_concurrency=RECIPE_CONCURRENCY)
        settings = RunSettings(concurrency=RECIPE_CONCURRENCY)
        progress, wall, _ = timed_run(backend, benchmark, Path(scratch), settings)
        (run,) = Path(scratch).glob("run-*")
        records = sorted(read_records(run / "records.jsonl").records, key=lambda r: r.started_at)
    waits = [r.timings["prepare_wait"] for r in records[RECIPE_CONCURRENCY:]]
    median = statistics.median(waits)
    return {
        "name": f"frames=recipe, 720p 10 s clips, concurrency {RECIPE_CONCURRENCY}",
        "samples": count,
        "wall_s": round(wall, 3),
        "value": round(median, 4),
        "unit": "median prepare_wait (s) once busy",
        "failed_samples": progress.failed,
        "target": f"<= {TARGET_WAIT_S} s",
        "met": median <= TARGET_WAIT_S and progress.failed == 0,
    }


def measure(clips_directory: Path, *, quick: bool = False) -> Section:
    mode = "quick" if quick else "full"
    return Section(
        key="openai_server",
        title="The openai backend through the vLLM emulator",
        note=(
            f"The `openai` backend and the runner over tests/vllm_emulator.py, {SERVICE_TIME:g} s"
            " simulated service time per request. Efficiency = ideal / wall, ideal ="
            " ceil(samples / concurrency) x service time. prepare_wait: the seconds a sample"
            " waited for its frames (decoded, sampled and JPEG-encoded in the decode-ahead),"
            f" median over all but the first {RECIPE_CONCURRENCY} samples."
        ),
        columns=[
            Column("measurement", "name"),
            Column("samples", "samples"),
            Column("wall", "wall_s", "{:.2f} s"),
            Column("value", "value"),
            Column("of", "unit"),
            Column("failed", "failed_samples"),
            Column("target", "target"),
            Column("met", "met"),
        ],
        rows=[_efficiency(SAMPLES[mode]), _prepare_wait(clips_directory, COPIES[mode])],
    )
