"""Test doubles for the runner, store and CLI tests.

`ScriptedBackend` stands in for a real backend (the hosted endpoint or a GPU
model, neither of which exists here). It honours the `Backend` contract: it
answers a `Query` with an `Answer`, raises `BackendError` for a per-sample
failure, and notices cancellation the way a real backend must in order to
release remote or device work. `TinyBenchmark` is a small multiple-choice
benchmark whose samples need no video files; `FetchingBenchmark` downloads some
of its videos from a URL first, as a benchmark of remote videos does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from harness.plugins import backends, benchmarks
from harness.scoring.prompts import multiple_choice_prompt
from harness.scoring.rules import score_multiple_choice
from harness.types import Answer, BackendError, Query, Sample, Score


@dataclass
class ScriptedBackend:
    """Test double: replies with a fixed text after a delay; fails or hangs on chosen samples."""

    name: ClassVar[str] = "scripted"
    default_concurrency: ClassVar[int] = 3

    reply: str = field(default="The answer is A.", metadata={"help": "text of every answer"})
    delay: float = field(default=0.0, metadata={"help": "seconds per answer"})
    fail: str = field(default="", metadata={"help": "comma-separated sample ids that fail"})
    hang: str = field(default="", metadata={"help": "comma-separated sample ids that never answer"})
    stuck: str = field(
        default="", metadata={"help": "comma-separated sample ids whose answer blocks a thread"}
    )
    in_flight: int = field(default=0, init=False)
    max_in_flight: int = field(default=0, init=False)
    cancelled: list[str] = field(default_factory=list, init=False)
    closed: bool = field(default=False, init=False)

    @classmethod
    def unavailable_reason(cls, mode: str = "live") -> str | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"reply": self.reply, "delay": self.delay}

    async def answer(self, query: Query) -> Answer:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if query.sample_id in self.hang.split(","):
                await asyncio.Event().wait()
            if query.sample_id in self.stuck.split(","):  # as a decode or a download can
                await asyncio.to_thread(threading.Event().wait)
            await asyncio.sleep(self.delay)
            if query.sample_id in self.fail.split(","):
                raise BackendError("validation_error", f"rejected {query.sample_id}", status=422)
            return Answer(
                text=self.reply, timings={"inference": self.delay}, usage={"output_tokens": 3}
            )
        except asyncio.CancelledError:
            self.cancelled.append(query.sample_id)
            raise
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class TinyBenchmark:
    """Test double: `count` four-way questions whose answer letters cycle A, B, C, D."""

    name: ClassVar[str] = "tiny"
    version: ClassVar[str] = "1"

    count: int = field(default=8, metadata={"help": "number of samples"})

    def samples(self) -> Iterator[Sample]:
        for index in range(self.count):
            yield Sample(
                id=f"tiny/{index:03d}",
                video=f"/videos/{index // 2}.mp4",
                question=f"Question {index}?",
                options=("red", "green", "blue", "yellow"),
                answer="ABCD"[index % 4],
                category=f"cat{index % 2}",
            )

    def prompt(self, sample: Sample) -> str:
        return multiple_choice_prompt(sample)

    def score(self, sample: Sample, text: str) -> Score:
        return score_multiple_choice(sample, text)


@dataclass
class FetchingBenchmark(TinyBenchmark):
    """Test double: `TinyBenchmark` whose odd samples' videos are at `url`, each fetched
    (downloaded) before its sample is asked, as a benchmark of remote videos does."""

    name: ClassVar[str] = "tiny-fetch"

    url: str = field(default="", metadata={"help": "where the odd samples' videos are"})

    def samples(self) -> Iterator[Sample]:
        for index, sample in enumerate(super().samples()):
            yield replace(sample, video=f"{self.url}/{index}.mp4") if index % 2 else sample

    def fetch_video(self, sample: Sample) -> str:
        if not sample.video.startswith("http"):
            return sample.video
        from harness.media.downloads import download_video

        return str(download_video(sample.video))


@dataclass
class ClipQuestions:
    """One two-way question about each video of `videos`, in order."""

    name: ClassVar[str] = "clip-questions"
    version: ClassVar[str] = "1"

    videos: list[str]

    def samples(self):
        for index, clip in enumerate(self.videos):
            yield Sample(f"q{index}", clip, f"Question {index}?", "A", ("bars", "dots"))

    def prompt(self, sample: Sample) -> str:
        return multiple_choice_prompt(sample)

    def score(self, sample: Sample, text: str) -> Score:
        return score_multiple_choice(sample, text)


def register_fakes() -> None:
    """Register the doubles (idempotent), as a plugin package would."""
    if "scripted" not in backends.names():
        backends.register(ScriptedBackend)
    if "tiny" not in benchmarks.names():
        benchmarks.register(TinyBenchmark)
        benchmarks.register(FetchingBenchmark)
