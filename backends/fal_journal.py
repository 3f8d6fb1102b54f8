"""What the fal backend keeps in the run directory: a journal of its requests, and fal's logs.

`fal-requests.jsonl`, the journal, gets a line for each request fal accepted, on
disk (`fsync`) before the sample waits on it: the sample, the request id, the app,
a fingerprint of what was asked (sha256 of the video reference and the prompt,
never the video) and the wall-clock time. A second line ends the entry once the
request's outcome is known: its result or error body read, or the request given up
and cancelled at fal (the sample's deadline, a failed poll). `--resume`
re-attaches a sample without a record to its latest request instead of
submitting again when that entry is open (the run interrupted or killed while
waiting; a result that could not be read) or ended with its result read (the run
stopped before the sample's record was written: while it was scored, a judge
asked): fal may still be running the request (a cancel only signals a running
app, which may finish and bill), or have its result (kept 1 h, 6 min when 10 KB or
larger). Only a request fal no longer knows, or one that ended without an answer
(cancelled, failed), has its sample submitted anew.

`fal-logs.jsonl` holds every line fal logged for each request, once and in order
(`n`, from 0), whether fal sends all lines so far on each poll or only new ones,
scrubbed of keys (`harness.secrets`); the record keeps the last few.

Both are appended as `records.jsonl` is (`AppendOnlyFile`): a process killed while
writing leaves at most a torn last line, which reading skips. A replay keeps fal's
logs but no journal: nothing in it was asked of fal, and it is never resumed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from backends.fal_billing import EXPIRED
from harness.files import json_bytes
from harness.protocols import time_left
from harness.run.store import RECORDS, AppendOnlyFile, read_lines, read_records
from harness.secrets import scrub_data
from harness.types import BackendError

REQUESTS = "fal-requests.jsonl"
LOGS = "fal-logs.jsonl"
RESULT_READ = "result_read"
"""The outcome of a request whose result was read: its answer, or what fal sent instead."""


def fingerprint(video: str, prompt: str) -> str:
    """What a request asked, as a sha256 of the sample's video reference (a path or URL,
    never the video's bytes) and its prompt."""
    return hashlib.sha256(json.dumps([video, prompt]).encode()).hexdigest()


@dataclass(frozen=True)
class Journaled:
    """A request an earlier session submitted and never saw end, and the lines of its
    log that session kept."""

    sample_id: str
    request_id: str
    app: str
    fingerprint: str
    submitted_at: float  # wall clock
    logs: tuple[str, ...] = ()


class RunFiles:
    """The journal and logs of one run directory, for one session.

    Resuming (`resuming`), the requests to re-attach to are read first (see the module),
    each taken once (`take`). Without `journal` (a replay) only logs are kept.
    """

    def __init__(self, directory: Path, *, resuming: bool, journal: bool) -> None:
        self._requests = AppendOnlyFile(directory / REQUESTS) if journal else None
        self._logs = AppendOnlyFile(directory / LOGS)
        self._open = _to_reattach(directory) if journal and resuming else {}
        if self._open:
            earlier = _logs_of(directory / LOGS, {e.request_id for e in self._open.values()})
            self._open = {
                sample: replace(entry, logs=earlier.get(entry.request_id, ()))
                for sample, entry in self._open.items()
            }
        self._samples: dict[str, str] = {}  # each live request's sample, by request id
        self._kept: dict[str, int] = {}  # the log lines kept of each live request

    def take(self, sample_id: str, app: str, asked: str) -> Journaled | None:
        """The request of an earlier session to re-attach `sample_id` to, if it asked
        `app` the same (`asked`: its `fingerprint`); each is taken at most once."""
        entry = self._open.pop(sample_id, None)
        if entry is None or (entry.app, entry.fingerprint) != (app, asked):
            return None
        self._samples[entry.request_id] = sample_id
        self._kept[entry.request_id] = len(entry.logs)
        return entry

    def submitted(self, sample_id: str, request_id: str, app: str, asked: str) -> None:
        """Journal a request fal accepted, on disk before anyone waits on it."""
        self._samples[request_id] = sample_id
        if self._requests is not None:
            at = time.time()
            line = {"event": "submitted", "sample_id": sample_id, "request_id": request_id}
            self._append(self._requests, {**line, "app": app, "fingerprint": asked, "at": at})
            self._requests.sync()

    def ended(self, request_id: str, outcome: str, **facts: Any) -> None:
        """End a live request's entry: its `outcome` is known (once; later calls do nothing)."""
        sample_id = self._samples.pop(request_id, None)
        self._kept.pop(request_id, None)
        if sample_id is not None and self._requests is not None:
            line = {"event": "ended", "sample_id": sample_id, "request_id": request_id}
            self._append(self._requests, {**line, "outcome": outcome, **facts, "at": time.time()})

    def log(self, request_id: str, lines: Sequence[str]) -> None:
        """Keep the lines of a live request's log so far (`lines`) that are not kept yet."""
        sample_id = self._samples.get(request_id)
        start = self._kept.get(request_id, 0)
        for n in range(start, len(lines)):
            line = {"sample_id": sample_id, "request_id": request_id, "n": n, "line": lines[n]}
            self._append(self._logs, line)
        self._kept[request_id] = max(start, len(lines))

    def close(self) -> None:
        """Put the logs on disk (journal lines are, as they are written)."""
        self._logs.close()
        if self._requests is not None:
            self._requests.close()

    @staticmethod
    def _append(file: AppendOnlyFile, line: dict[str, Any]) -> None:
        file.append(json_bytes(scrub_data(line), separators=(",", ":")))


def at_deadline() -> bool:
    """Whether the current sample's deadline has come: a request given up now is the
    runner failing the sample, not the run being interrupted."""
    left = time_left()
    return left is not None and left <= 0


def resubmitting(journaled: Journaled, error: BackendError) -> dict[str, Any] | None:
    """What became of a re-attached request that gives no answer, when its sample is to
    be submitted anew: fal no longer knows it (`not_found`), its result is gone
    (`result_expired`), or it ended without an answer (`no_answer`: cancelled, failed).
    None for any other failure (a poll that failed), which fails the sample as before."""
    details = error.details
    if "status_error" in details:
        outcome = "no_answer"
    elif error.kind == EXPIRED:
        outcome = EXPIRED
    elif details.get("status_code") == 404:
        outcome = "not_found"
    else:
        return None
    return {
        "request_id": journaled.request_id,
        "outcome": outcome,
        "error": f"{error.kind}: {error.message}",
    }


def _objects(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of an append-only file, torn and unreadable lines skipped."""
    for _, line, _ in read_lines(path):
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(data, dict):
            yield data


def _to_reattach(directory: Path) -> dict[str, Journaled]:
    """Each sample's latest request, where a resume re-attaches to it: its entry is open,
    or ended with the result read while the sample has no record."""
    submitted: dict[str, Journaled] = {}
    ended: dict[str, str] = {}
    for data in _objects(directory / REQUESTS):
        try:
            if data.get("event") == "submitted":
                entry = Journaled(
                    sample_id=str(data["sample_id"]),
                    request_id=str(data["request_id"]),
                    app=str(data["app"]),
                    fingerprint=str(data["fingerprint"]),
                    submitted_at=float(data["at"]),
                )
                submitted[entry.request_id] = entry
            elif data.get("event") == "ended":
                ended[str(data["request_id"])] = str(data["outcome"])
        except (KeyError, TypeError, ValueError):
            continue
    latest = {entry.sample_id: entry for entry in submitted.values()}  # in written order
    recorded = {record.sample_id for record in read_records(directory / RECORDS).records}
    chosen = {}
    for sample, entry in latest.items():
        outcome = ended.get(entry.request_id)
        if outcome is None or (outcome == RESULT_READ and sample not in recorded):
            chosen[sample] = entry
    return chosen


def _logs_of(path: Path, request_ids: set[str]) -> dict[str, tuple[str, ...]]:
    """The log lines kept of each of `request_ids`, in order, up to the first missing one."""
    lines: dict[str, dict[int, str]] = {}
    for data in _objects(path):
        request_id, n, line = data.get("request_id"), data.get("n"), data.get("line")
        if request_id in request_ids and isinstance(n, int) and isinstance(line, str):
            lines.setdefault(str(request_id), {})[n] = line
    kept = {}
    for request_id, by_n in lines.items():
        count = 0
        while count in by_n:
            count += 1
        kept[request_id] = tuple(by_n[n] for n in range(count))
    return kept
