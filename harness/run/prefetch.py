"""Samples made ready to ask ahead of the backend, in a small pool of threads.

Preparing a sample fetches its video (a Hub benchmark downloads it), builds its
prompt, and lets a backend that has per-video work (`PreparesVideos`: the
local backend decodes and samples the frames) do it. The runner takes samples
in order; `Preparation` keeps the next `ahead` samples preparing beyond the
ones being answered, so the GPU or the remote queue does not wait on decoding.
With `ahead` 0 a sample is prepared when its turn comes, as peers do.

At most `workers` preparations run at once. One that its sample gave up on (its
deadline passed, the run was cancelled) stops counting at once, though its thread
may stay busy until the fetch or decode it is in ends on its own: a silent server
costs the samples behind it nothing. Spare threads (`SPARE_THREADS`) take over.

A failure to fetch the video or build the prompt is the sample's failure. A
failure of the backend's own preparation is left to `answer`, which does that
work itself when it was not done, and reports what went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from harness.protocols import Backend, Benchmark, FetchesVideos, PreparesVideos
from harness.types import BackendError, Sample

SPARE_THREADS = 8
"""Threads beyond `workers`, for preparations given up on that are still busy."""


@dataclass(frozen=True)
class Prepared:
    """A sample ready to ask: its video as the backend reads it, its prompt, and the
    seconds preparing took (`fetch` when its video was fetched, `prepare` in all)."""

    video: str
    prompt: str
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Turn:
    """A sample whose turn has come: where it stands in the run, and its preparation
    (None for a sample its benchmark could not read, which is not prepared)."""

    position: int
    sample: Sample
    preparing: asyncio.Future[Prepared] | None


class Preparation:
    """Hands out samples in order, each already preparing, with `ahead` more behind it."""

    def __init__(
        self,
        benchmark: Benchmark,
        backend: Backend,
        samples: Sequence[Sample],
        *,
        ahead: int,
        workers: int,
    ) -> None:
        self._benchmark = benchmark
        self._backend = backend if isinstance(backend, PreparesVideos) else None
        self._samples = samples
        self._ahead = ahead
        self._slots = asyncio.Semaphore(workers)
        self._pool = ThreadPoolExecutor(
            workers + SPARE_THREADS, thread_name_prefix="vqa-harness-prepare"
        )
        self._started: dict[int, asyncio.Future[Prepared] | None] = {}
        self._next = 0

    def take(self) -> Turn | None:
        """The next sample, or None when all are taken; starts preparing the ones ahead."""
        position = self._next
        if position >= len(self._samples):
            return None
        self._next += 1
        last = min(position + self._ahead, len(self._samples) - 1)
        for later in range(position, last + 1):
            if later not in self._started:
                self._started[later] = self._start(self._samples[later])
        return Turn(position, self._samples[position], self._started.pop(position))

    def close(self) -> None:
        """Drop the preparations no one will take (before a slot given up on lets one
        start); the running ones finish in the pool."""
        for future in self._started.values():
            if future is None:
                continue
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # retrieved, so an unused failure is not reported
        self._started.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _start(self, sample: Sample) -> asyncio.Future[Prepared] | None:
        if sample.invalid:
            return None
        return asyncio.ensure_future(self._run(sample))

    async def _run(self, sample: Sample) -> Prepared:
        async with self._slots:  # released when done, or given up on
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self._prepare, sample)

    def _prepare(self, sample: Sample) -> Prepared:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        try:
            benchmark = self._benchmark
            video = (
                benchmark.fetch_video(sample)
                if isinstance(benchmark, FetchesVideos)
                else sample.video
            )
        except Exception as exc:
            raise BackendError("video_unavailable", f"{type(exc).__name__}: {exc}") from exc
        if video != sample.video:
            timings["fetch"] = time.perf_counter() - started
        prompt = self._benchmark.prompt(sample)
        if self._backend is not None:
            # A head start only: answer() does this work again, and reports what went wrong.
            with contextlib.suppress(Exception):
                self._backend.prepare(video)
        timings["prepare"] = time.perf_counter() - started
        return Prepared(video, prompt, timings)
