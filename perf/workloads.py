"""What the runner measurements run: questions about videos, and backends that stand in
for a model with a fixed service time.

`FixedTimeBackend` stands in for a GPU serving MiniCPM-V: one sample at a time
takes `seconds`, and needs its video's frames first, sampled by OpenBMB's recipe
through the same `FrameCache` and `prepare` hook as the local backend, so the
runner's decode ahead works for it as it does for `local`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.media.frames import FrameCache
from harness.run.runner import Progress, execute
from harness.run.settings import RunSettings
from harness.run.store import RunStore
from harness.scoring.prompts import multiple_choice_prompt
from harness.scoring.rules import score_multiple_choice
from harness.types import Answer, Query, Sample, Score

OPTIONS = ("dancing", "running", "sitting", "cooking")


@dataclass
class Questions:
    """`per_video` four-way questions about each of `videos` in turn (Video-MME asks 3),
    `count` in all."""

    name: ClassVar[str] = "perf-questions"
    version: ClassVar[str] = "1"

    videos: list[str]
    per_video: int
    count: int

    def samples(self) -> Iterator[Sample]:
        for index in range(self.count):
            yield Sample(
                id=f"perf/{index:04d}",
                video=self.videos[index // self.per_video % len(self.videos)],
                question=f"Question {index}: what happens?",
                options=OPTIONS,
                answer="A",
            )

    def prompt(self, sample: Sample) -> str:
        return multiple_choice_prompt(sample)

    def score(self, sample: Sample, text: str) -> Score:
        return score_multiple_choice(sample, text)


@dataclass
class InstantBackend:
    """Answers at once: what is left of a run's time is the runner's own."""

    name: ClassVar[str] = "instant"
    default_concurrency: ClassVar[int] = 1

    @classmethod
    def unavailable_reason(cls, mode: str = "live") -> str | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {}

    async def answer(self, query: Query) -> Answer:
        return Answer(text="The answer is A.", timings={"inference": 0.0})

    async def aclose(self) -> None:
        pass


@dataclass
class FixedTimeBackend(InstantBackend):
    """One GPU: each answer takes `seconds` once its video's frames are sampled."""

    name: ClassVar[str] = "fixed-time"

    seconds: float = 0.2
    frames: FrameCache = field(
        default_factory=lambda: FrameCache(fps=1.0, max_frames=64, max_bytes=4096 << 20)
    )

    def prepare(self, video: str) -> None:
        self.frames.warm(video)

    async def answer(self, query: Query) -> Answer:
        await asyncio.to_thread(self.frames.get, query.video)
        await asyncio.sleep(self.seconds)
        return Answer(text="The answer is A.", timings={"inference": self.seconds})


def timed_run(
    backend: Any, benchmark: Questions, scratch: Path, settings: RunSettings
) -> tuple[Progress, float, float]:
    """Run `benchmark` into a new run directory under `scratch`: (progress, wall s, CPU s).
    The backend is closed after, in the run's event loop as a session closes it (a fal
    webhook receiver stops there), outside the times."""
    store = RunStore(scratch / f"run-{time.monotonic_ns()}")
    store.path.mkdir(parents=True)
    samples = list(benchmark.samples())

    async def run() -> tuple[Progress, float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            progress = await execute(
                backend, benchmark, samples, store, settings, show_progress=False
            )
            return progress, time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await backend.aclose()

    return asyncio.run(run())
