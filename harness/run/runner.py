"""Drive a backend over a benchmark's samples and append one record per sample.

Bounded concurrency: `concurrency` workers take samples in order, so no more
than that many queries are in flight, while the next `decode_ahead` samples are
prepared (video fetched, frames decoded) in a small thread pool behind them
(`harness.run.prefetch`). Each sample has a deadline, from its turn: what its
preparation still needs then (its video fetched, its frames decoded) and the
backend's answer must fit in it. A backend failure, a missed deadline or a
scoring bug becomes that sample's failed record and the run goes on; a sample
the benchmark marked invalid is recorded as failed (`invalid_sample`) without
asking the backend. Unreadable lines in `records.jsonl` (a torn last line) are
named on stderr and ignored. Scoring runs in a worker thread, since it may wait
on an LLM judge. Cancelling `execute` (Ctrl-C) cancels the in-flight queries
through the backend, drops the preparations not yet taken, and writes nothing
for them; a preparation thread busy on a fetch is left to end on its own.

A failure that is not the sample's own stops the run: when the first
`systemic_failures` samples a session completes all failed with the same error
kind (a wrong key, a model that cannot load), no further sample starts, the ones
in flight finish and are recorded, and `execute` raises `SystemicFailure`.
Invalid samples are not counted (the benchmark's data, not the backend, failed
them); once one of the first samples is answered, or two failed differently,
the check is off for the session, so later failures never stop a run.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from tqdm import tqdm

from harness.errors import HarnessError, UsageError
from harness.protocols import (
    Backend,
    Benchmark,
    ScoresOfficially,
    sample_deadline,
    sample_notes,
)
from harness.run.prefetch import Preparation, Prepared, Turn
from harness.run.settings import RunSettings
from harness.run.store import RecordLog, RunStore, read_records
from harness.scoring.answer_text import readable
from harness.scoring.groups import sample_groups
from harness.scoring.judge import Judge
from harness.scoring.rules import apply_judge
from harness.types import (
    INVALID_SAMPLE,
    NOT_RECORDED,
    Answer,
    BackendError,
    ErrorInfo,
    Query,
    Record,
    Sample,
    Score,
    check_answer,
)

T = TypeVar("T")


class SystemicFailure(HarnessError):
    """The first samples of a session all failed with one error kind: the run stopped."""

    def __init__(self, failed: Sequence[Record]) -> None:
        error = failed[0].error
        assert error is not None  # only failed records are collected
        lines = error.message.strip().splitlines()
        first = f": {lines[0]}" if lines else ""
        super().__init__(
            f"stopped: the first {len(failed)} samples all failed with {error.kind}{first}"
        )


@dataclass
class _SystemicCheck:
    """Watches the first records of a session for `SystemicFailure` (see the module doc)."""

    limit: int
    failed: list[Record] = field(default_factory=list)
    off: bool = field(init=False)

    def __post_init__(self) -> None:
        self.off = self.limit == 0

    def failure(self, record: Record) -> SystemicFailure | None:
        """The run's systemic failure if `record` completes one, else None."""
        if self.off or (record.error is not None and record.error.kind == INVALID_SAMPLE):
            return None
        first = self.failed[0].error if self.failed else None
        if record.error is None or (first is not None and record.error.kind != first.kind):
            self.off = True
            return None
        self.failed.append(record)
        if len(self.failed) < self.limit:
            return None
        self.off = True
        return SystemicFailure(self.failed)


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
            raise UsageError(f"benchmark yields sample id {sample.id!r} more than once")
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
    """Run every pending sample; return the run's counts. Re-raises cancellation;
    raises `SystemicFailure` once the samples in flight have finished."""
    check_unique_ids(samples)
    log = read_records(store.records_path)
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
    preparation = Preparation(
        benchmark, backend, todo, ahead=settings.decode_ahead, workers=settings.decode_workers
    )
    check = _SystemicCheck(settings.systemic_failures)
    stopped: list[SystemicFailure] = []

    async def worker() -> None:
        while not stopped and (turn := preparation.take()) is not None:
            record = (await _answer_one(backend, benchmark, turn, settings, judge)).scrubbed()
            store.append(record)
            progress.written += 1
            progress.count(record)
            bar.update(1)
            bar.set_postfix(acc=f"{progress.accuracy:.1%}", errors=progress.failed, refresh=False)
            if failure := check.failure(record):
                stopped.append(failure)

    workers = [asyncio.create_task(worker()) for _ in range(min(settings.concurrency, len(todo)))]
    try:
        if workers:
            # Not gather: cancelled, it would cancel the workers before the preparations
            # queued behind them are dropped, and a slot freed would start one of them.
            done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a worker's error stops the run
    finally:
        preparation.close()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        bar.close()
        store.close()
    if stopped:
        raise stopped[0]
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
    turn: Turn,
    settings: RunSettings,
    judge: Judge | None,
) -> Record:
    sample = turn.sample
    started, waited = time.time(), time.perf_counter()
    limit = settings.deadline
    end = None if limit is None else asyncio.get_running_loop().time() + limit
    prepared: Prepared | None = None
    answer: Answer | None = None
    error: ErrorInfo | None = None
    score = None
    timings: dict[str, float] = {}  # what preparing took, and how long the sample waited
    if turn.preparing is None:
        error = ErrorInfo(INVALID_SAMPLE, sample.invalid or "invalid sample")
    else:
        try:
            prepared = await _by(end, turn.preparing, limit, "video not fetched and prepared")
            timings.update(prepared.timings)
        except Exception as exc:
            error = ErrorInfo.from_exception(exc)
        # About zero when the sample was prepared ahead: decoding was off the critical path.
        timings["prepare_wait"] = time.perf_counter() - waited
    clock = time.perf_counter()  # `total`, the backend's latency, starts here: the runner owns it
    if prepared is not None:
        try:
            query = Query(sample.id, prepared.video, prepared.prompt)
            answer = check_answer(await _by(end, backend.answer(query), limit, "no answer"))
        except Exception as exc:  # one sample's failure never stops the run
            error = ErrorInfo.from_exception(exc)
            if error.kind == NOT_RECORDED:  # the recording cannot tell which sample asked
                error = replace(error, message=f"sample {sample.id}: {error.message}")
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
        prompt=prepared.prompt if prepared is not None else "",
        target=sample.answer,
        response=answer.text if answer is not None else None,
        score=score if error is None else None,
        error=error,
        timings={**(answer.timings if answer else {}), **timings, "total": elapsed},
        usage=dict(answer.usage) if answer else {},
        meta=dict(answer.meta) if answer else {},
        groups=sample_groups(sample),
        warmup=turn.position < settings.warmup,
        started_at=started,
        finished_at=time.time(),
    )


def _score(benchmark: Benchmark, sample: Sample, text: str, judge: Judge | None) -> Score:
    """The benchmark's score of the text without special-token markup, saying when
    markup was removed, with its official score beside it where it has one; with a
    judge, open-ended answers also get its verdict (the one place a judge is applied)."""
    answer = readable(text)
    score = benchmark.score(sample, answer.text)
    if isinstance(benchmark, ScoresOfficially):
        score = replace(score, official=benchmark.official_score(sample, answer.text))
    if judge is not None and not sample.options:
        score = apply_judge(score, sample, answer.text, judge)
    if not answer.removed:
        return score
    if score.rule is not None:
        return replace(score, rule=f"{score.rule} ({answer.note})")
    return replace(score, reason=f"{score.reason or 'unscored'} ({answer.note})")


async def _by(end: float | None, step: Awaitable[T], limit: float | None, missed: str) -> T:
    """`step`'s result, or a `deadline` failure saying `missed` once the loop's clock
    passes `end`, the end of the sample's `limit` seconds (None: no deadline). The
    failure carries what the backend noted of its work (`sample_notes`)."""
    deadline = asyncio.timeout_at(end)
    token = sample_deadline.set(end)  # so a backend can tell its service the deadline
    notes: dict[str, Any] = {}
    notes_token = sample_notes.set(notes)  # what the backend knew when it was given up
    try:
        async with deadline:
            return await step
    except TimeoutError:
        if deadline.expired():
            raise BackendError(
                "deadline", f"{missed} within the {limit:g} s deadline", **notes
            ) from None
        raise
    finally:
        sample_deadline.reset(token)
        sample_notes.reset(notes_token)
