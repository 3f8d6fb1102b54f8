"""Whole fal runs through injected faults, one fault class per test.

Each run ends within a bound set by its deadline, writes exactly one record per
sample, answers every sample or fails it with a reason naming the fault, and
cancels at fal every request it gave up before it completed. fal-client's
retry waits are recorded, not slept.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import fal_client.client
import pytest
from fal_emulator import FalEmulator
from key_scan import FAL_CANARY
from record_fal import guessing_reply

import backends.fal
from harness.cli import main
from harness.plugins import benchmarks
from harness.run.store import read_records
from harness.types import Record, Sample

SAMPLES = 12
CONCURRENCY = 4
DEADLINE = 1.0
ALWAYS = 10**6  # `times` for a fault that `when` alone limits
ATTEMPTS = fal_client.client.MAX_ATTEMPTS  # fal-client's tries of one HTTP request
RETRY_CAP_S = 10.0  # the longest wait fal-client's async client asks for between tries


@dataclass
class PerSample:
    """A `when` for `FalEmulator.inject`: the first `n` requests of each chosen sample.

    Requests are told apart by the prompt they carry (the synthetic suite's are
    unique); `hits` counts the faults served to each.
    """

    n: int = ALWAYS
    prompts: Collection[str] | None = None
    hits: Counter = field(default_factory=Counter)

    def __call__(self, body: dict) -> bool:
        prompt = body.get("prompt")
        if self.prompts is not None and prompt not in self.prompts:
            return False
        if self.hits[prompt] >= self.n:
            return False
        self.hits[prompt] += 1
        return True


@pytest.fixture(scope="module")
def suite(synthetic_cache):
    """The synthetic suite, its videos built before any run is timed."""
    return benchmarks.create("synthetic", cache_dir=synthetic_cache)


@pytest.fixture(scope="module")
def samples(suite) -> list[Sample]:
    """The samples each run asks, in order."""
    return list(itertools.islice(suite.samples(), SAMPLES))


@pytest.fixture(scope="module")
def prompts(suite, samples) -> list[str]:
    return [suite.prompt(sample) for sample in samples]


@pytest.fixture
def retry_waits(monkeypatch) -> list[tuple[int, float]]:
    """(retry number, seconds) of each wait fal-client asks for; none is slept."""
    monkeypatch.setenv("FAL_KEY", FAL_CANARY)
    asked: list[tuple[int, float]] = []
    real = fal_client.client._get_retry_delay

    def record(num_retry: int, *args, **kwargs) -> float:
        asked.append((num_retry, real(num_retry, *args, **kwargs)))
        return 0.0

    monkeypatch.setattr(fal_client.client, "_get_retry_delay", record)
    return asked


def run_through(emulator: FalEmulator, tmp_path, cache) -> tuple[dict[str, Record], float]:
    """Run the suite's first samples through `emulator`: (records by prompt, session seconds).

    Checks what every faulty run must keep: one record per sample, each answered
    or failed with a kind and a message.
    """
    args = ["run", "--backend", "fal", "-B", "poll_interval=0.001"]
    args += ["-B", f"upload_cache={tmp_path / 'uploads.json'}"]
    args += ["-S", f"cache_dir={cache}", "--limit", str(SAMPLES)]
    args += ["--concurrency", str(CONCURRENCY), "--deadline", str(DEADLINE)]
    with emulator.installed():
        code = main([*args, "--out", str(tmp_path), "--run-id", "run", "--no-progress"])
    assert code == 0
    log = read_records(tmp_path / "run" / "records.jsonl")
    assert log.skipped == []
    assert len(log.records) == SAMPLES
    assert len({r.sample_id for r in log.records}) == SAMPLES
    for record in log.records:
        assert (record.ok and record.response) or (record.error.kind and record.error.message)
    (session,) = json.loads((tmp_path / "run" / "manifest.json").read_text())["sessions"]
    return {r.prompt: r for r in log.records}, session["finished_at"] - session["started_at"]


def request_ids(emulator: FalEmulator, prompt: str) -> list[str]:
    """The ids of the requests fal accepted for the sample asking `prompt`."""
    return [rid for rid, body in emulator.submitted.items() if body["prompt"] == prompt]


def sent(emulator: FalEmulator, method: str, suffix: str) -> int:
    """How many requests `method` to a URL ending in `suffix` the emulator received."""
    return sum(1 for m, url in emulator.requests if m == method and url.endswith(suffix))


def failures(records: dict[str, Record]) -> dict[str, tuple[str, str]]:
    return {p: (r.error.kind, r.error.message) for p, r in records.items() if not r.ok}


def test_a_429_storm_is_retried_on_fal_clients_schedule_never_retry_afters(
    tmp_path, synthetic_cache, prompts, retry_waits
):
    """Every sample is rate-limited 6 times and answered; one limited for good fails with
    its 429 and Retry-After. fal-client waits its own backoff (at most 10 s a try), never
    the hour Retry-After asks for, so a storm cannot hold a run."""
    retry_after = 3600
    emulator = FalEmulator(reply=guessing_reply)
    hopeless = PerSample(prompts=prompts[:1])
    submits, polls, results = PerSample(3), PerSample(2), PerSample(1)
    emulator.inject("rate_limit", on="submit", times=ALWAYS, when=hopeless, retry_after=retry_after)
    for on, when in (("submit", submits), ("status", polls), ("result", results)):
        emulator.inject("rate_limit", on=on, times=ALWAYS, when=when, retry_after=retry_after)

    records, elapsed = run_through(emulator, tmp_path, synthetic_cache)

    assert failures(records) == {
        prompts[0]: ("rate_limited", f"Rate limit exceeded (HTTP 429, Retry-After: {retry_after})")
    }
    assert records[prompts[0]].error.details["retry_after"] == str(retry_after)
    assert hopeless.hits[prompts[0]] == ATTEMPTS
    rest = prompts[1:]
    assert submits.hits == dict.fromkeys(rest, 3)
    assert polls.hits == dict.fromkeys(rest, 2)
    assert results.hits == dict.fromkeys(rest, 1)
    assert [records[p].meta["retries"] for p in rest] == [6] * len(rest)
    assert sent(emulator, "POST", emulator.app_id) == ATTEMPTS + len(rest) * (1 + 3)
    assert len(retry_waits) == (ATTEMPTS - 1) + len(rest) * 6
    assert max(n for n, _ in retry_waits) == ATTEMPTS - 1
    assert max(seconds for _, seconds in retry_waits) <= RETRY_CAP_S < retry_after
    assert elapsed < DEADLINE  # no sample waited out its deadline


def test_5xx_bursts_retry_ingress_errors_and_fail_the_apps_own(
    tmp_path, synthetic_cache, prompts, retry_waits
):
    """Ingress 5xx (no request id) are retried, a burst longer than fal-client's tries
    fails with the page's title; the app's own 5xx fail at once with fal's error type,
    and a failed status poll cancels its request."""
    emulator = FalEmulator(reply=guessing_reply)
    emulator.inject("server_error", on="submit", when=PerSample(prompts=prompts[:1]))
    emulator.inject(
        "server_error",
        on="status",
        when=PerSample(prompts=prompts[1:2]),
        status=503,
        error_type="runner_unavailable",
        message="No runner available",
    )
    endless = PerSample(prompts=prompts[2:3])
    emulator.inject("ingress", on="submit", times=ALWAYS, when=endless, status=502)
    submits, polls = PerSample(2), PerSample(1)
    emulator.inject("ingress", on="submit", times=ALWAYS, when=submits, status=503)
    emulator.inject("ingress", on="status", times=ALWAYS, when=polls, status=504)

    records, elapsed = run_through(emulator, tmp_path, synthetic_cache)

    assert failures(records) == {
        prompts[0]: ("internal_error", "Internal server error"),
        prompts[1]: ("runner_unavailable", "No runner available"),
        prompts[2]: ("http_502", "502 Bad Gateway (HTML error page)"),
    }
    assert [records[p].error.details["status_code"] for p in prompts[:3]] == [500, 503, 502]
    assert endless.hits[prompts[2]] == ATTEMPTS
    assert len(request_ids(emulator, prompts[0])) == 0  # the app's 500 was not retried
    assert emulator.cancelled == request_ids(emulator, prompts[1])
    answered = prompts[3:]
    assert all(records[p].ok for p in answered)
    assert [records[p].meta["retries"] for p in answered] == [2 + 1] * len(answered)
    assert len(retry_waits) == sum(submits.hits.values()) + sum(polls.hits.values()) + (
        ATTEMPTS - 1
    )
    assert elapsed < DEADLINE


def test_dropped_connections_are_retried_and_a_dead_one_cancels_its_request(
    tmp_path, synthetic_cache, samples, prompts, retry_waits
):
    """Dropped submits, polls, results and uploads are retried; a submit fal accepted
    before the drop is resubmitted (fal runs it twice, the run records it once); a
    status poll dropped for good fails with the transport error and cancels."""
    emulator = FalEmulator(reply=guessing_reply)
    dead = PerSample(prompts=prompts[1:2])
    emulator.inject("drop", on="status", times=ALWAYS, when=dead)
    emulator.inject("drop", on="submit", when=PerSample(prompts=prompts[:1]), processed=True)
    polls, results = PerSample(2), PerSample(1)
    emulator.inject("drop", on="status", times=ALWAYS, when=polls)
    emulator.inject("drop", on="result", times=ALWAYS, when=results)
    last_video = Path(samples[-1].video).name  # not the dead sample's, which keeps no meta
    emulator.inject("drop", on="upload", when=lambda upload: upload["file_name"] == last_video)

    records, elapsed = run_through(emulator, tmp_path, synthetic_cache)

    assert failures(records) == {
        prompts[1]: ("transport_error", "ReadError: connection reset by peer")
    }
    assert dead.hits[prompts[1]] == ATTEMPTS
    assert emulator.cancelled == request_ids(emulator, prompts[1])
    twice = request_ids(emulator, prompts[0])
    assert len(twice) == 2 and records[prompts[0]].meta["request_id"] == twice[1]
    answered = [p for p in prompts if p != prompts[1]]
    retries = sum(records[p].meta["retries"] for p in answered)
    assert retries == 1 + 2 * len(answered) + len(answered) + 1  # submit, polls, results, upload
    assert len(retry_waits) == retries + ATTEMPTS - 1
    assert elapsed < DEADLINE


def test_requests_that_never_complete_fail_at_the_deadline_and_are_cancelled(
    tmp_path, synthetic_cache, prompts, retry_waits, monkeypatch
):
    """Stuck requests, a status call that never returns, a result that never comes and a
    cancel that hangs too: each sample fails at its deadline, every request given up
    before it completed is cancelled, and the run ends in about one deadline."""
    cancel_timeout = 0.5
    monkeypatch.setattr(backends.fal, "CANCEL_TIMEOUT_S", cancel_timeout)
    emulator = FalEmulator(reply=guessing_reply)
    stuck = PerSample(prompts=prompts[:2])
    emulator.inject("never_complete", on="status", times=ALWAYS, when=stuck)
    emulator.inject("slow", on="cancel", when=PerSample(prompts=prompts[:1]), delay=3600)
    emulator.inject("slow", on="status", when=PerSample(prompts=prompts[2:3]), delay=3600)
    emulator.inject("slow", on="result", when=PerSample(prompts=prompts[3:4]), delay=3600)

    records, elapsed = run_through(emulator, tmp_path, synthetic_cache)

    message = f"no answer within the {DEADLINE:g} s deadline"
    assert failures(records) == {p: ("deadline", message) for p in prompts[:4]}
    for prompt in prompts[:4]:  # the deadline covers preparing the sample and asking
        timings = records[prompt].timings
        waited = timings["prepare_wait"] + timings["total"]
        assert DEADLINE <= waited < DEADLINE + cancel_timeout + 0.5
    given_up = [rid for p in prompts[:3] for rid in request_ids(emulator, p)]
    assert len(given_up) == 3
    assert all(sent(emulator, "PUT", f"{rid}/cancel") == 1 for rid in given_up)
    assert sorted(emulator.cancelled) == sorted(given_up[1:])  # the first cancel hung
    (completed,) = request_ids(emulator, prompts[3])
    assert sent(emulator, "PUT", f"{completed}/cancel") == 0
    assert all(records[p].ok for p in prompts[4:])
    assert elapsed < DEADLINE + cancel_timeout + 1.0  # the stuck four ran side by side


def test_completed_with_error_fails_the_sample_with_fals_error_body(
    tmp_path, synthetic_cache, prompts, retry_waits
):
    emulator = FalEmulator(reply=guessing_reply)
    emulator.inject("completed_error", on="status", when=PerSample(prompts=prompts[:1]))
    emulator.inject(
        "completed_error",
        on="status",
        when=PerSample(prompts=prompts[1:2]),
        error_type="timeout",
        message="Request timed out after 300 s",
    )

    records, elapsed = run_through(emulator, tmp_path, synthetic_cache)

    assert failures(records) == {
        prompts[0]: ("runner_disconnected", "CUDA out of memory"),
        prompts[1]: ("timeout", "Request timed out after 300 s"),
    }
    for prompt in prompts[:2]:
        (rid,) = request_ids(emulator, prompt)
        details = records[prompt].error.details
        assert details["request_id"] == rid
        assert details["status_code"] == 500  # the error body was fetched
        assert details["status_error"] == failures(records)[prompt][1]
        assert sent(emulator, "GET", rid) == 1
    assert emulator.cancelled == []  # nothing left running to cancel
    assert all(records[p].ok for p in prompts[2:])
    assert retry_waits == []
    assert elapsed < DEADLINE


def test_bodies_that_are_not_json_fail_their_sample_and_a_failed_poll_cancels(
    tmp_path, synthetic_cache, prompts, retry_waits
):
    emulator = FalEmulator(reply=guessing_reply)
    for on, prompt in (("submit", prompts[0]), ("status", prompts[1]), ("result", prompts[2])):
        emulator.inject("malformed_json", on=on, when=PerSample(prompts=[prompt]))
    emulator.inject("non_json", on="result", when=PerSample(prompts=prompts[3:4]))

    records, elapsed = run_through(emulator, tmp_path, synthetic_cache)

    assert {p: kind for p, (kind, _) in failures(records).items()} == dict.fromkeys(
        prompts[:4], "invalid_response"
    )
    assert all("fal returned a body that is not JSON" in m for _, m in failures(records).values())
    assert request_ids(emulator, prompts[0]) == []  # its submit's answer was unreadable
    assert emulator.cancelled == request_ids(emulator, prompts[1])
    assert all(records[p].ok for p in prompts[4:])
    assert retry_waits == []
    assert elapsed < DEADLINE
