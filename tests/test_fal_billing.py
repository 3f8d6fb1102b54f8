"""Real cost of fal runs, through the CLI against the emulator: each record keeps the units
fal billed with the unit price read once per run from fal's pricing API, `compare` prices
fal by units times price (no --price needed) and falls back to the per-second estimate,
labelled, only without them; requests billed without an answer are counted."""

from __future__ import annotations

import time

import fal_client.client
import pytest
from fal_emulator import PRICING_PATH, FalEmulator
from record_fal import guessing_reply

from backends.fal import FalBackend
from backends.fal_billing import EXPIRED, RESULT_KEPT, RUNNING_CANCEL
from harness.cli import main
from harness.run.store import read_records
from harness.types import ErrorInfo, Record

BILLED = {"units": 2.0, "unit": "second", "unit_price": 0.001, "currency": "USD"}


@pytest.fixture(autouse=True)
def fal_key(monkeypatch):
    monkeypatch.setenv("FAL_KEY", "test-key-id:test-key-secret")
    monkeypatch.setattr(fal_client.client, "_get_retry_delay", lambda *args, **kwargs: 0.0)


def emulated(**options) -> FalEmulator:
    """fal billing 2 units ("second") per answer at $0.001 a unit."""
    return FalEmulator(reply=guessing_reply, billable_units=2.0, unit_price=0.001, **options)


def run(emulator, out, cache, *, deadline: float = 30.0, limit: int = 3) -> list[Record]:
    args = ["run", "--backend", "fal", "-B", "poll_interval=0.01", "-B", "poll_max_interval=0.05"]
    args += ["--deadline", str(deadline), "-S", f"cache_dir={cache}", "--limit", str(limit)]
    with emulator.installed():
        main([*args, "--no-progress", "--out", str(out), "--run-id", "r"])
    return read_records(out / "r/records.jsonl").records


def fal_cost(out, capsys, *prices: str) -> str:
    """The fal row of `compare`'s cost table (the run against itself), or its note."""
    capsys.readouterr()
    assert main(["compare", str(out / "r"), str(out / "r"), *prices]) == 0
    out = capsys.readouterr().out
    lines = out[out.index("Cost per 1,000 samples") :].splitlines()
    rows = [line for line in lines if line.startswith("| r (baseline) | fal |")]
    return rows[0] if rows else lines[-1]


def pricing_requests(emulator: FalEmulator) -> int:
    return sum(1 for _, url in emulator.requests if PRICING_PATH in url)


def test_records_keep_billed_units_and_the_price_read_once_per_run(
    tmp_path, synthetic_cache, capsys
):
    emulator = emulated()
    records = run(emulator, tmp_path, synthetic_cache, limit=4)
    assert len(records) == 4 and all(r.ok for r in records)
    assert [r.meta["billing"] for r in records] == [BILLED] * 4
    assert pricing_requests(emulator) == 1  # read once for the whole run, by 4 samples at once
    assert sorted(emulator.billed) == sorted(r.meta["request_id"] for r in records)

    row = fal_cost(tmp_path, capsys)  # no --price: fal's own price is in the records
    assert row.startswith("| r (baseline) | fal | 2.00 | fal's billed units")  # 1000 x 2 x $0.001
    assert "mean 2 units (second) per answer at $0.001 per second" in row
    assert "per-second" not in row and "billed without an answer" not in row


def test_a_price_not_read_is_noted_once_and_the_per_second_fallback_is_labelled(
    tmp_path, synthetic_cache, capsys
):
    emulator = emulated()
    emulator.inject("server_error", on="pricing", status=500, message="pricing is down")
    records = run(emulator, tmp_path, synthetic_cache)
    assert all(r.ok for r in records)  # not fatal
    assert pricing_requests(emulator) == 1  # not asked again for each sample
    for record in records:
        billing = record.meta["billing"]
        assert billing == {"units": 2.0, "price": "not read: HTTP 500 pricing is down"}

    assert "no prices given" in fal_cost(tmp_path, capsys)  # and no unit price recorded
    row = fal_cost(tmp_path, capsys, "--price", "fal=0.01")
    assert row.startswith("| r (baseline) | fal | 4.20 | mean 0.420 s of fal inference")
    assert "a per-second estimate, no record carries fal's billed units and unit price" in row


def test_a_resent_submit_is_counted_and_fal_ran_it_twice(tmp_path, synthetic_cache, capsys):
    """A submit whose response was lost is re-sent by fal-client: the record says so, and
    the emulator (in time mode, where requests run unpolled) billed both."""
    emulator = emulated(service_time=0.05)
    emulator.inject("drop", on="submit", processed=True)
    records = run(emulator, tmp_path, synthetic_cache)
    assert all(r.ok for r in records)
    (resent,) = [r for r in records if "resent_submits" in r.meta]
    assert resent.meta["resent_submits"] == 1
    assert len(emulator.billed) == len(records) + 1
    row = fal_cost(tmp_path, capsys)
    assert row.startswith("| r (baseline) | fal | 2.00 |")
    assert "billed without an answer, not priced: 1 submit(s) fal-client re-sent" in row


def test_a_request_cancelled_while_running_is_counted_and_its_app_may_bill(
    tmp_path, synthetic_cache, capsys
):
    """A failed poll gives up a running request: fal answers CANCELLATION_REQUESTED, and
    an app that ignores the signal runs on to its output, billed."""
    # Long enough a service time that the cancel, after the first poll, finds it running.
    emulator = emulated(service_time=0.5, app_honours_cancel=False)
    emulator.inject("server_error", on="status", message="poll failed")
    records = run(emulator, tmp_path, synthetic_cache)
    (failed,) = [r for r in records if not r.ok]
    assert failed.error.details["cancel"] == RUNNING_CANCEL
    ran_on = time.monotonic() + 5  # the app finishes its 0.5 s after the run gave it up
    while failed.error.details["request_id"] not in emulator.billed and time.monotonic() < ran_on:
        time.sleep(0.05)
    assert failed.error.details["request_id"] in emulator.billed
    row = fal_cost(tmp_path, capsys)
    assert "1 request(s) cancelled while running (the app may have run on and billed)" in row


def test_a_queued_request_given_up_is_removed_and_not_counted(tmp_path, synthetic_cache, capsys):
    emulator = emulated(queue_polls=5)
    emulator.inject("server_error", on="status", message="poll failed")
    records = run(emulator, tmp_path, synthetic_cache)
    (failed,) = [r for r in records if not r.ok]
    assert failed.error.details["cancel"] == "OK"  # removed from the queue: never run
    assert failed.error.details["request_id"] not in emulator.billed
    assert "billed without an answer" not in fal_cost(tmp_path, capsys)


def test_an_expired_result_fails_its_sample_clearly(tmp_path, synthetic_cache, capsys):
    emulator = emulated(result_retention=0.0)
    records = run(emulator, tmp_path, synthetic_cache, limit=2)
    for record in records:
        assert record.error.kind == EXPIRED
        assert record.error.message.startswith(f"fal no longer holds the result ({RESULT_KEPT})")
        assert record.error.details["request_id"] in emulator.billed  # billed all the same
    row = fal_cost(tmp_path, capsys, "--price", "fal=0.01")
    assert "no answered samples; billed without an answer, not priced: 2 result(s)" in row


def answer(sample: str, billing: dict | None = None, **timings: float) -> Record:
    meta = {"billing": billing} if billing is not None else {}
    return Record(sample, "ok", "c", "v", "p", "A", response="A", timings=timings, meta=meta)


def test_older_records_price_as_before_and_a_mixed_run_says_which_is_which():
    old = [answer("1", total=9.0, inference=2.0), answer("2", total=6.0)]
    cost = FalBackend.estimate_cost(old, [], 0.001)
    assert cost.usd_per_1000 == pytest.approx(1000 * 4.0 * 0.001)  # mean (2 + 6) / 2 s
    assert cost.basis.startswith("mean 4.000 s of fal inference per answer at $0.001/s")
    assert FalBackend.estimate_cost(old, [], None).usd_per_1000 is None

    mixed = [answer("1", BILLED, inference=0.5), answer("2", {"units": 2.0}, inference=3.0)]
    cost = FalBackend.estimate_cost(mixed, [], 0.01)
    assert cost.usd_per_1000 == pytest.approx(1000 * (2.0 * 0.001 + 3.0 * 0.01) / 2)
    assert "for 1 of 2 answers" in cost.basis
    assert "a per-second estimate for the other 1: mean 3.000 s" in cost.basis
    unpriced = FalBackend.estimate_cost(mixed, [], None)
    assert unpriced.usd_per_1000 is None
    assert unpriced.basis.startswith("1 of 2 answers lack fal's billed units or unit price")

    gone = Record("3", "failed", "c", "v", "p", "A", error=ErrorInfo(EXPIRED, "gone"))
    assert FalBackend.estimate_cost([*mixed[:1], gone], [], None).usd_per_1000 == 2.0
