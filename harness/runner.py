"""Drive a backend over a benchmark's samples and append one record per sample.

Bounded concurrency: `concurrency` workers pull samples from one iterator, so
no more than that many queries are in flight. Each query has a deadline; a
backend failure, a missed deadline or a scoring bug becomes that sample's
failed record and the run goes on. Cancelling `execute` (Ctrl-C) cancels the
in-flight queries through the backend and writes nothing for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tqdm import tqdm

from backends.base import Backend
from benchmarks.base import Benchmark
from harness.store import RecordLog, RunStore
from harness.types import Answer, BackendError, ErrorInfo, Query, Record, Sample


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
) -> Progress:
    """Run every pending sample; return the run's counts. Re-raises cancellation."""
    check_unique_ids(samples)
    log = store.read_records()
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
            record = await _answer_one(
                backend, benchmark, sample, settings, position < settings.warmup
            )
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
    backend: Backend, benchmark: Benchmark, sample: Sample, settings: RunSettings, warmup: bool
) -> Record:
    started = time.time()
    clock = time.perf_counter()
    prompt = ""
    answer: Answer | None = None
    error: ErrorInfo | None = None
    score = None
    try:
        prompt = benchmark.prompt(sample)
        answer = await _ask(backend, Query(sample.id, sample.video, prompt), settings.deadline)
    except Exception as exc:  # one sample's failure never stops the run
        error = ErrorInfo.from_exception(exc)
    elapsed = time.perf_counter() - clock
    if answer is not None:
        try:
            score = benchmark.score(sample, answer.text)
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
        timings={**(answer.timings if answer else {}), "total": elapsed},
        usage=dict(answer.usage) if answer else {},
        meta=dict(answer.meta) if answer else {},
        warmup=warmup,
        started_at=started,
        finished_at=time.time(),
    )


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
