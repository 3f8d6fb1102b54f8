"""fal's per-account concurrency, as a run of the `fal` backend sees it.

fal runs at most an account's concurrency limit of its requests at once (the
IN_PROGRESS ones: 2 for a new account, rising to 40 with credit) and keeps the rest
IN_QUEUE, never refusing one (docs.fal.ai "Concurrency Limits"). A run with more
requests in flight than its account's limit measures, as fal's `queue`, its own
requests waiting for each other.

- `InFlight` counts this run's requests at fal (each submit's `in_flight`, itself
  included) and, with `-B account_concurrency=N`, holds all but N back before their
  submit: that wait is the sample's `cap_wait`, spent on this machine, never part of
  fal's `queue`.
- `account_facts` reads a finished run's records: the most requests fal was seen
  running at once (`peak_in_progress`, from each request's `submitted_at` and the
  spans its status polls saw it IN_PROGRESS), and whether `queue` grew with the number
  in flight; when it did, the account's limit is below that number, and a warning
  names the likely limit.

Polls see only part of each run (from the first poll that finds it IN_PROGRESS to
the last), so `peak_in_progress` never reads more requests than fal ran at once; it
can read fewer when runs are short against the time between polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.protocols import RunFacts
from harness.types import Record, finite_number, whole_number

TITLE = "fal account concurrency"
QUEUE_GROWTH_S = 0.1
"""Least growth of the mean `queue` that counts: the backend's shortest wait between
polls (`poll_interval`'s default), below which polls cannot tell queue times apart."""
FAL_LIMITS = "new accounts start at 2, rising to 40 with credit"


@dataclass
class InFlight:
    """This run's requests in flight at fal, and the cap (`account_concurrency`) on them."""

    cap: int | None = None
    count: int = 0
    _places: asyncio.Semaphore | None = field(default=None, init=False, repr=False)

    @contextlib.asynccontextmanager
    async def request(self) -> AsyncIterator[float | None]:
        """Hold a place while one request is at fal, from before its submit until its
        result or failure; yields the seconds it waited for a place under the cap (None
        without a cap)."""
        waited = None
        if self.cap is not None:
            if self._places is None:
                self._places = asyncio.Semaphore(self.cap)
            started = time.perf_counter()
            await self._places.acquire()
            waited = time.perf_counter() - started
        self.count += 1
        try:
            yield waited
        finally:
            self.count -= 1
            if self._places is not None:
                self._places.release()

    def at_submit(self) -> dict[str, Any]:
        """A submit's place in the run: the wall-clock time (so that its record's `states`
        are times too) and the requests in flight then, itself included."""
        return {"submitted_at": round(time.time(), 3), "in_flight": self.count}


def requeues(states: Sequence[Sequence[Any]]) -> int:
    """How often a request went back from IN_PROGRESS to IN_QUEUE (fal re-queues a request
    whose runner failed), from its `states` ([seconds, state, queue position] each)."""
    names = [state[1] for state in states]
    return sum(1 for pair in itertools.pairwise(names) if pair == ("IN_PROGRESS", "IN_QUEUE"))


def peak_overlap(spans: Iterable[tuple[float, float]]) -> int:
    """The most spans that overlap at one moment. Two spans overlap when each starts
    before the other ends: spans that only touch do not, and a span of one moment (a
    request seen IN_PROGRESS by one poll) overlaps those it falls strictly inside."""
    events: list[tuple[float, int]] = []  # (time, kind): 0 an end, 1 a moment, 2 a start
    for start, end in spans:
        events += [(start, 2), (end, 0)] if end > start else [(start, 1)]
    peak = running = 0
    for _, kind in sorted(events):
        if kind == 1:
            peak = max(peak, running + 1)
        else:
            running += 1 if kind == 2 else -1
            peak = max(peak, running)
    return peak


@dataclass(frozen=True)
class _Request:
    """What one record says of its request at fal."""

    in_flight: int
    spans: list[tuple[float, float]]  # wall-clock times it was seen IN_PROGRESS
    queue: float | None
    cap_wait: float | None
    requeued: bool


def _request(record: Record) -> _Request | None:
    """The record's request, from its meta (an answer) or error details (a failure);
    None when it has no `submitted_at` and `in_flight` (a record from before them)."""
    facts = record.meta if record.ok else (record.error.details if record.error else {})
    submitted, in_flight = facts.get("submitted_at"), facts.get("in_flight")
    if not finite_number(submitted) or not whole_number(in_flight):
        return None
    seen = facts.get("in_progress")
    spans = [
        (submitted + span[0], submitted + span[1])
        for span in (seen if isinstance(seen, list) else [])
        if isinstance(span, list)
        and len(span) == 2
        and all(map(finite_number, span))
        and span[0] <= span[1]
    ]
    requeued = facts.get("requeues")
    return _Request(
        in_flight=in_flight,
        spans=spans,
        queue=record.timings.get("queue") if record.ok else None,
        cap_wait=record.timings.get("cap_wait"),
        requeued=isinstance(requeued, int) and requeued > 0,
    )


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def account_facts(records: Sequence[Record]) -> RunFacts | None:
    """The run's requests at fal against the account's limit: the peak IN_PROGRESS, the
    most in flight, the mean `queue` of the answers submitted with up to the peak in
    flight and with more, what `queue` measured, the re-queued requests, and the mean
    `cap_wait` when capped; a warning when `queue` grew with the number in flight."""
    requests = [request for record in records if (request := _request(record))]
    if not requests:
        return None
    peak = peak_overlap(span for request in requests for span in request.spans)
    most = max(request.in_flight for request in requests)
    queued = [(r.in_flight, r.queue) for r in requests if r.queue is not None]
    low = _mean([queue for in_flight, queue in queued if in_flight <= peak])
    high = _mean([queue for in_flight, queue in queued if in_flight > peak])
    base = low or 0.0
    limited = (
        0 < peak < most and high is not None and high >= 2 * base and high - base >= QUEUE_GROWTH_S
    )
    if not peak:
        queue_is = "not known: no status poll saw a request IN_PROGRESS"
    elif limited:
        queue_is = f"mostly the account's concurrency limit (likely {peak})"
    else:
        queue_is = "fal's own queue: no sign of the account's concurrency limit"
    facts: dict[str, Any] = {
        "requests": len(requests),
        "peak_in_progress": peak,
        "most_in_flight": most,
        "queue_mean_s_in_flight_up_to_peak": low,
        "queue_mean_s_in_flight_above_peak": high,
        "queue_is": queue_is,
        "requeued_requests": sum(request.requeued for request in requests),
    }
    waits = [request.cap_wait for request in requests if request.cap_wait is not None]
    if waits:
        facts["cap_wait_mean_s"] = _mean(waits)
    warnings = []
    if limited:
        warnings.append(
            f"fal ran at most {peak} of this run's requests at once while up to {most} were "
            f"in flight, and `queue` grew with the number in flight (mean {base:.2f} s with "
            f"up to {peak} in flight at submit, {high:.2f} s with more): the account's "
            f"concurrency limit is likely {peak}, and `queue` measures this run's requests "
            f"waiting for each other. Run with `-B account_concurrency={peak}` to wait for "
            f"the limit here instead (as `cap_wait`), or raise it with fal ({FAL_LIMITS})."
        )
    return RunFacts(TITLE, facts, warnings)
