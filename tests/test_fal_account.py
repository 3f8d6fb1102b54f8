"""fal's per-account concurrency in a run: the peak number of requests fal ran at once,
a warning when `queue` is the account's limit at work, `-B account_concurrency` holding
requests back here instead, re-queues in a record's `states`; and the analysis itself
on hand-built records."""

from __future__ import annotations

import itertools
import json

import fal_client.client
import pytest
from fal_emulator import FalEmulator
from record_fal import guessing_reply

from backends.fal_account import account_facts, peak_overlap, requeues
from harness.analysis.summary import summarize
from harness.cli import main
from harness.run.manifest import Manifest
from harness.run.store import RecordLog, read_records
from harness.types import ErrorInfo, Record

SERVICE_S = 0.3
SAMPLES = 16


@pytest.fixture(autouse=True)
def fal_key(monkeypatch):
    monkeypatch.setenv("FAL_KEY", "test-key-id:test-key-secret")
    monkeypatch.setattr(fal_client.client, "_get_retry_delay", lambda *args, **kwargs: 0.0)


def run(emulator, tmp_path, cache, capsys, *options: str, concurrency: int = 8):
    """A fal run through the CLI: its records, its summary.json and what it printed."""
    args = ["run", "--backend", "fal", "-B", "poll_interval=0.01", "-B", "poll_max_interval=0.05"]
    for option in options:
        args += ["-B", option]
    args += ["--concurrency", str(concurrency), "-S", f"cache_dir={cache}"]
    args += ["--limit", str(SAMPLES), "--no-progress", "--out", str(tmp_path), "--run-id", "r"]
    with emulator.installed():
        assert main(args) == 0
    records = read_records(tmp_path / "r/records.jsonl").records
    summary = json.loads((tmp_path / "r/summary.json").read_text())
    return records, summary, capsys.readouterr().err


def limited_account() -> FalEmulator:
    """An account whose limit (2) is below the run's 8 in flight."""
    return FalEmulator(reply=guessing_reply, service_time=SERVICE_S, account_concurrency=2)


def test_a_limit_below_the_runs_concurrency_reads_as_the_peak_and_warns(
    tmp_path, synthetic_cache, capsys
):
    records, summary, err = run(limited_account(), tmp_path, synthetic_cache, capsys)
    assert len(records) == SAMPLES and all(r.ok for r in records)
    assert max(r.meta["in_flight"] for r in records) == 8
    facts = summary["backend_facts"]
    assert facts["title"] == "fal account concurrency"
    assert facts["facts"]["peak_in_progress"] == 2
    assert facts["facts"]["most_in_flight"] == 8
    assert facts["facts"]["queue_is"] == "mostly the account's concurrency limit (likely 2)"
    waiting = facts["facts"]["queue_mean_s_in_flight_above_peak"]
    assert waiting > SERVICE_S  # they waited behind runs of the account's other requests
    assert summary["latency"]["queue"]["mean"] > SERVICE_S
    (warning,) = facts["warnings"]
    assert "likely 2" in warning and "-B account_concurrency=2" in warning
    assert err.count("vqa-harness: warning: ") == 1 and warning in err
    report = (tmp_path / "r/report.md").read_text()
    assert "## fal account concurrency" in report
    assert "| peak_in_progress | 2 |" in report and "**Warning:** fal ran at most 2" in report


def test_capping_requests_in_flight_at_the_limit_moves_the_wait_here(
    tmp_path, synthetic_cache, capsys
):
    records, summary, err = run(
        limited_account(), tmp_path, synthetic_cache, capsys, "account_concurrency=2"
    )
    assert len(records) == SAMPLES and all(r.ok for r in records)
    assert {r.meta["in_flight"] for r in records} <= {1, 2}
    facts = summary["backend_facts"]
    assert facts["warnings"] == [] and "warning" not in err
    assert facts["facts"]["peak_in_progress"] == 2 == facts["facts"]["most_in_flight"]
    assert summary["latency"]["queue"]["mean"] < 0.1  # fal started each at once
    waits = [r.timings["cap_wait"] for r in records]  # kept apart from fal's `queue`
    assert max(waits) > SERVICE_S and summary["latency"]["cap_wait"]["max"] == max(waits)
    assert facts["facts"]["cap_wait_mean_s"] == pytest.approx(sum(waits) / SAMPLES, abs=1e-3)
    manifest = json.loads((tmp_path / "r/manifest.json").read_text())
    assert manifest["backend"]["describe"]["account_concurrency"] == 2


def test_a_cap_below_one_is_one_line_and_exit_status_2(tmp_path, capsys):
    args = ["run", "--backend", "fal", "-B", "account_concurrency=0", "--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (
        err == "vqa-harness: error: backend 'fal': account_concurrency must be at least 1, got 0\n"
    )


def test_without_a_limit_every_request_runs_at_once_and_nothing_warns(
    tmp_path, synthetic_cache, capsys
):
    emulator = FalEmulator(reply=guessing_reply, service_time=SERVICE_S)
    records, summary, err = run(emulator, tmp_path, synthetic_cache, capsys, concurrency=4)
    assert all(r.ok and "cap_wait" not in r.timings for r in records)
    facts = summary["backend_facts"]["facts"]
    assert facts["peak_in_progress"] == 4 == facts["most_in_flight"]
    assert facts["queue_is"] == "fal's own queue: no sign of the account's concurrency limit"
    assert summary["backend_facts"]["warnings"] == [] and "warning" not in err


def test_a_requeued_request_shows_in_its_states_and_counts(tmp_path, synthetic_cache, capsys):
    emulator = FalEmulator(reply=guessing_reply, queue_polls=0, progress_polls=2)
    calls = itertools.count()
    # The second status call that finds a request running has its runner fail.
    emulator.inject("requeue", on="status", when=lambda arguments: next(calls) == 1)
    records, summary, _ = run(emulator, tmp_path, synthetic_cache, capsys, concurrency=1)
    assert all(r.ok for r in records)
    (requeued,) = [r for r in records if r.meta["requeues"]]
    assert requeued.meta["requeues"] == 1
    states = [state[1] for state in requeued.meta["states"]]
    assert states == ["IN_PROGRESS", "IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert len(requeued.meta["in_progress"]) == 2  # one span per run
    assert emulator.requeued == [requeued.meta["request_id"]]
    assert summary["backend_facts"]["facts"]["requeued_requests"] == 1


# -- the analysis, on hand-built records ---------------------------------------------


def answered(submitted_at, in_flight, spans, queue=0.0, **meta):
    meta = {"submitted_at": submitted_at, "in_flight": in_flight, "in_progress": spans, **meta}
    sample = f"s{submitted_at}-{in_flight}"
    timings = {"total": 1.0, "queue": queue}
    return Record(sample, "ok", "c", "v.mp4", "p", "A", response="A", timings=timings, meta=meta)


def given_up(submitted_at, in_flight, spans):
    details = {"submitted_at": submitted_at, "in_flight": in_flight, "in_progress": spans}
    error = ErrorInfo("deadline", "no answer within the deadline", details)
    return Record(f"f{submitted_at}", "failed", "c", "v.mp4", "p", "A", error=error)


@pytest.mark.parametrize(
    ("spans", "peak"),
    [
        ([], 0),
        ([(0, 1), (2, 3)], 1),  # one after the other
        ([(0, 1), (1, 2)], 1),  # touching: one poll saw the first end, the next the second
        ([(0, 4), (1, 2)], 2),  # nested
        ([(0, 2), (1, 3), (2.5, 4)], 2),  # a chain: never three at once
        ([(0, 3), (1, 3), (2, 3)], 3),
        ([(0, 2), (1, 1)], 2),  # one poll's moment inside a run
        ([(0, 2), (2, 2)], 1),  # ... or at its end
        ([(1, 1), (1, 1)], 1),  # two moments at once: neither starts before the other ends
        ([(0, 3), (1, 1), (1, 2)], 2),
    ],
)
def test_peak_overlap(spans, peak):
    assert peak_overlap(spans) == peak


def test_spans_are_placed_by_their_submit_and_failed_samples_count():
    records = [
        answered(100.0, 1, [[0.5, 2.0]]),
        answered(101.0, 2, [[0.2, 0.4]]),  # 101.2-101.4: inside the first
        given_up(101.1, 3, [[0.2, 0.3]]),  # 101.3-101.4: inside both
        answered(200.0, 1, [[0.0, 5.0]]),  # long after
    ]
    facts = account_facts(records)
    assert facts is not None and facts.facts["peak_in_progress"] == 3
    assert facts.facts["requests"] == 4 and facts.facts["most_in_flight"] == 3


def test_queue_that_grows_with_the_number_in_flight_warns_with_the_likely_limit():
    records = [
        answered(0.0, 1, [[0.0, 1.0]], queue=0.01),
        answered(0.0, 2, [[0.0, 1.0]], queue=0.02),
        answered(0.0, 3, [[1.0, 2.0]], queue=1.0),
        answered(0.0, 4, [[1.0, 2.0]], queue=1.0),
    ]
    facts = account_facts(records)
    assert facts is not None
    assert facts.facts["queue_mean_s_in_flight_up_to_peak"] == pytest.approx(0.015)
    assert facts.facts["queue_mean_s_in_flight_above_peak"] == 1.0
    assert facts.facts["queue_is"] == "mostly the account's concurrency limit (likely 2)"
    (warning,) = facts.warnings
    assert "at most 2 of this run's requests at once while up to 4" in warning


def test_a_queue_that_does_not_grow_is_fals_own_and_warns_nothing():
    records = [
        answered(0.0, 1, [[0.0, 1.0]], queue=0.5),
        answered(0.0, 2, [[0.0, 1.0]], queue=0.55),  # a cold start, say: all waited alike
        answered(0.0, 3, [[1.0, 2.0]], queue=0.6),
    ]
    facts = account_facts(records)
    assert facts is not None and facts.warnings == []
    assert facts.facts["queue_is"] == "fal's own queue: no sign of the account's concurrency limit"


def test_records_without_the_keys_or_with_odd_values_are_left_out():
    old = answered(0.0, 1, [])
    old = Record.from_dict({**old.to_dict(), "meta": {"request_id": "r"}})
    assert account_facts([old]) is None
    odd = [
        answered("yesterday", 1, [[0, 1]]),
        answered(0.0, True, [[0, 1]]),
        answered(0.0, 1, "spans"),
        answered(0.0, 1, [[2, 1], ["a", 1], [0]]),
    ]
    facts = account_facts(odd)
    assert facts is not None  # the last two are requests, whose spans are unreadable
    assert facts.facts["requests"] == 2 and facts.facts["peak_in_progress"] == 0
    assert facts.facts["queue_is"] == "not known: no status poll saw a request IN_PROGRESS"


def test_requeues_count_each_return_to_the_queue():
    states = [[0, "IN_QUEUE", 1], [1, "IN_PROGRESS", None], [2, "IN_QUEUE", 0]]
    states += [[3, "IN_PROGRESS", None], [4, "IN_QUEUE", 0], [5, "COMPLETED", None]]
    assert requeues(states) == 2
    assert requeues(states[:2]) == 0


def test_a_fal_run_from_before_these_keys_summarizes_cleanly():
    manifest = Manifest.from_dict(
        {
            "run_id": "old",
            "spec": {"backend": "fal", "benchmark": "tiny"},
            "status": "completed",
            "mode": "replay",
            "backend": {"name": "fal"},
            "benchmark": {"name": "tiny", "version": "1"},
        }
    )
    old = Record.from_dict({**answered(0.0, 1, []).to_dict(), "meta": {"states": []}})
    summary = summarize(RecordLog(records=[old]), manifest)
    assert summary.backend_facts is None and "backend_facts" not in summary.to_dict()
