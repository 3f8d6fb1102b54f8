"""Drive a backend over a benchmark's samples and append one record per sample.

Bounded concurrency: `concurrency` workers pull samples from one iterator, so
no more than that many queries are in flight. Each query has a deadline; a
backend failure, a missed deadline or a scoring bug becomes that sample's
failed record and the run goes on; a sample the benchmark marked invalid is
recorded as failed (`invalid_sample`) without asking the backend. Unreadable
lines in `records.jsonl` (a torn last line) are named on stderr and ignored.
Scoring runs in a worker thread, since it may wait on an LLM judge. Cancelling
`execute` (Ctrl-C) cancels the in-flight queries through the backend and writes
nothing for them.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tqdm import tqdm

from backends.base import Backend
from benchmarks.base import Benchmark, apply_judge, local_video
from harness.groups import sample_groups
from harness.judge import Judge
from harness.store import RecordLog, RunStore
from harness.types import (
    INVALID_SAMPLE,
    Answer,
    BackendError,
    ErrorInfo,
    Query,
    Record,
    Sample,
    Score,
)


@dataclass(frozen=True)
class RunSettings:
    """How a run is executed; none of these change an answer."""

    concurrency: int = 4
    deadline: float | None = 600.0
    warmup: int = 0
    retry_failed: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError(f"deadline must be positive, got {self.deadline}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be 0 or more, got {self.warmup}")


@dataclass
class Progress:
    """Counts over the whole run, earlier sessions included."""

    total: int
    ok: int = 0
    correct: int = 0
    failed: int = 0
    written: int = 0

    def count(self, record: Record) -> None:
        if record.ok:
            self.ok += 1
            self.correct += record.correct
        else:
            self.failed += 1

    @property
    def accuracy(self) -> float:
        done = self.ok + self.failed
        return self.correct / done if done else 0.0


def pending_samples(
    samples: Sequence[Sample], log: RecordLog, *, retry_failed: bool
) -> list[Sample]:
    """Samples still to run: no OK record yet, and failed ones only when retrying."""
    outcome = log.latest_by_sample()
    pending = []
    for sample in samples:
        record = outcome.get(sample.id)
        if record is None or (not record.ok and retry_failed):
            pending.append(sample)
    return pending


def check_unique_ids(samples: Iterable[Sample]) -> None:
    seen: set[str] = set()
    for sample in samples:
        if sample.id in seen:
            raise ValueError(f"benchmark yields sample id {sample.id!r} more than once")
        seen.add(sample.id)


async def execute(
    backend: Backend,
    benchmark: Benchmark,
    samples: Sequence[Sample],
    store: RunStore,
    settings: RunSettings,
    *,
    show_progress: bool = True,
    judge: Judge | None = None,
) -> Progress:
    """Run every pending sample; return the run's counts. Re-raises cancellation."""
    check_unique_ids(samples)
    log = store.read_records()
    if log.skipped:  # a torn last line from a killed run, or foreign lines: never fatal
        more = f" (and {len(log.skipped) - 1} more)" if len(log.skipped) > 1 else ""
        print(f"{store.path}: ignoring {log.skipped[0]}{more}", file=sys.stderr)
    todo = pending_samples(samples, log, retry_failed=settings.retry_failed)
    progress = _progress_from(log, samples, todo)
    bar = tqdm(
        total=len(samples),
        initial=len(samples) - len(todo),
        desc=f"{getattr(backend, 'name', 'backend')} · {benchmark.name}",
        unit="sample",
        disable=not show_progress,
        dynamic_ncols=True,
    )
    queue = iter(enumerate(todo))

    async def worker() -> None:
        for position, sample in queue:
            warmup = position < settings.warmup
            record = await _answer_one(backend, benchmark, sample, settings, warmup, judge)
            store.append(record)
            progress.written += 1
            progress.count(record)
            bar.update(1)
            bar.set_postfix(acc=f"{progress.accuracy:.1%}", errors=progress.failed, refresh=False)

    workers = [asyncio.create_task(worker()) for _ in range(min(settings.concurrency, len(todo)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        bar.close()
        store.close()
    return progress


def _progress_from(log: RecordLog, samples: Sequence[Sample], todo: Sequence[Sample]) -> Progress:
    wanted = {s.id for s in samples} - {s.id for s in todo}
    progress = Progress(total=len(samples))
    for sample_id, record in log.latest_by_sample().items():
        if sample_id in wanted:
            progress.count(record)
    return progress


async def _answer_one(
    backend: Backend,
    benchmark: Benchmark,
    sample: Sample,
    settings: RunSettings,
    warmup: bool,
    judge: Judge | None,
) -> Record:
    started = time.time()
    clock = time.perf_counter()
    prompt = ""
    answer: Answer | None = None
    error: ErrorInfo | None = None
    score = None
    fetched: dict[str, float] = {}
    if sample.invalid:
        error = ErrorInfo(INVALID_SAMPLE, sample.invalid)
    else:
        try:  # in a thread: fetching a Hub video (or its subtitles) is blocking I/O
            video, prompt = await asyncio.to_thread(_prepare, benchmark, sample)
            if video != sample.video:
                fetched["fetch"] = time.perf_counter() - clock
        except Exception as exc:
            error = ErrorInfo.from_exception(exc)
        clock = time.perf_counter()  # the backend's latency starts here
        if error is None:
            try:
                answer = await _ask(backend, Query(sample.id, video, prompt), settings.deadline)
            except Exception as exc:  # one sample's failure never stops the run
                error = ErrorInfo.from_exception(exc)
    elapsed = time.perf_counter() - clock
    if answer is not None:
        try:  # in a thread: scoring may ask an LLM judge over HTTP
            score = await asyncio.to_thread(_score, benchmark, sample, answer.text, judge)
        except Exception as exc:
            error = ErrorInfo("scoring_error", f"{type(exc).__name__}: {exc}")
    return Record(
        sample_id=sample.id,
        status="ok" if error is None else "failed",
        category=sample.category,
        video=sample.video,
        prompt=prompt,
        target=sample.answer,
        response=answer.text if answer is not None else None,
        score=score if error is None else None,
        error=error,
        timings={**(answer.timings if answer else {}), **fetched, "total": elapsed},
        usage=dict(answer.usage) if answer else {},
        meta=dict(answer.meta) if answer else {},
        groups=sample_groups(sample),
        warmup=warmup,
        started_at=started,
        finished_at=time.time(),
    )


def _score(benchmark: Benchmark, sample: Sample, text: str, judge: Judge | None) -> Score:
    """The benchmark's score; with a judge, open-ended answers also get its verdict."""
    score = benchmark.score(sample, text)
    if judge is not None and not sample.options and score.judge is None:
        score = apply_judge(score, sample, text, judge)
    return score


def _prepare(benchmark: Benchmark, sample: Sample) -> tuple[str, str]:
    """The sample's video made local (Hub benchmarks download it now) and its prompt."""
    try:
        video = local_video(benchmark, sample)
    except Exception as exc:
        raise BackendError("video_unavailable", f"{type(exc).__name__}: {exc}") from exc
    return video, benchmark.prompt(sample)


async def _ask(backend: Backend, query: Query, deadline_s: float | None) -> Answer:
    deadline = asyncio.timeout(deadline_s)
    try:
        async with deadline:
            return await backend.answer(query)
    except TimeoutError:
        if deadline.expired():
            raise BackendError(
                "deadline", f"no answer within the {deadline_s:g} s deadline"
            ) from None
        raise
