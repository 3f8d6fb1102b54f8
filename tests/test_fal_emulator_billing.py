"""The fal emulator's billing, pricing API, result retention and cancel outcomes, as fal
documents them (see `fal_emulator`'s docstring), driven through fal-client and raw httpx."""

from __future__ import annotations

import fal_client
import fal_client.client
import pytest
from fal_client import Completed, InProgress
from fal_emulator import BILLABLE_UNITS, FalEmulator
from test_fal_emulator import APP, INPUT, drive, raw

PRICING = "https://api.fal.ai/v1/models/pricing"


@pytest.fixture(autouse=True)
def instant_retries(monkeypatch):
    monkeypatch.setattr(fal_client.client, "_get_retry_delay", lambda *args, **kwargs: 0.0)


async def completed(
    client: fal_client.AsyncClient, store_io: bool = False, **arguments: str
) -> fal_client.AsyncRequestHandle:
    """A request submitted (with `X-Fal-Store-IO: 0` unless `store_io`, as the backend
    sends it) and polled until fal says it COMPLETED."""
    headers = {} if store_io else {"X-Fal-Store-IO": "0"}
    handle = await client.submit(APP, {**INPUT, **arguments}, headers=headers)
    while not isinstance(await handle.status(), Completed):
        pass
    return handle


def test_a_result_carries_the_units_fal_billed_and_a_failed_one_none():
    emulator = FalEmulator(inference_time=1.25)
    emulator.inject("completed_error", on="status", when=lambda args: args["prompt"] == "oom")

    async def body(client):
        return await completed(client), await completed(client, prompt="oom")

    answered, failed = drive(emulator, body)
    result = raw(emulator, "GET", answered.response_url)
    assert result.status_code == 200 and result.json() == {"output": "A"}
    assert float(result.headers[BILLABLE_UNITS]) == 1.25  # the per-second fallback
    error = raw(emulator, "GET", failed.response_url)
    assert error.status_code == 500 and BILLABLE_UNITS not in error.headers  # 5xx: not billed
    assert emulator.billed == {answered.request_id: 1.25}


def test_billed_counts_requests_nobody_fetched_such_as_a_resent_submits_duplicate():
    """A submit whose response was lost is re-sent by fal-client: fal runs (and bills) both."""
    emulator = FalEmulator(service_time=0.01, billable_units=3.0)
    emulator.inject("drop", on="submit", processed=True)

    async def body(client):
        handle = await client.submit(APP, INPUT)
        return handle, await handle.get(interval=0)

    handle, result = drive(emulator, body)
    assert result == {"output": "A"}
    assert len(emulator.submitted) == 2  # the first submit ran although its answer was lost
    assert handle.request_id in emulator.billed
    assert emulator.billed == dict.fromkeys(emulator.submitted, 3.0)


def test_the_pricing_api_needs_a_key_and_lists_the_apps_unit_price():
    emulator = FalEmulator(unit_price=0.002, billing_unit="second")
    params = {"endpoint_id": f"{APP},fal-ai/other"}
    priced = raw(emulator, "GET", PRICING, params=params)
    assert priced.status_code == 200
    assert priced.json() == {
        "prices": [{"endpoint_id": APP, "unit_price": 0.002, "unit": "second", "currency": "USD"}],
        "next_cursor": None,
        "has_more": False,
    }
    other = raw(emulator, "GET", PRICING, params={"endpoint_id": "fal-ai/other"})
    assert other.json()["prices"] == []
    assert raw(emulator, "GET", PRICING, params=params, headers={}).status_code == 401
    assert raw(emulator, "GET", PRICING).status_code == 400  # endpoint_id is required
    emulator.inject("server_error", on="pricing", status=503)
    assert raw(emulator, "GET", PRICING, params=params).status_code == 503


def test_a_result_expires_after_its_retention_shorter_when_large_and_never_when_stored():
    emulator = FalEmulator(result_retention=0.0)
    expired = raw(emulator, "GET", drive(emulator, completed).response_url)
    assert expired.status_code == 404 and expired.json() == {"detail": "Request not found"}

    sized = FalEmulator(
        reply=lambda args: "A" * (11_000 if args["prompt"] == "big" else 1),
        large_result_retention=0.0,
    )

    async def two(client):
        return await completed(client, prompt="big"), await completed(client, prompt="small")

    big, small = drive(sized, two)
    assert raw(sized, "GET", big.response_url).status_code == 404  # 11 KB: kept 6 min at fal
    assert raw(sized, "GET", small.response_url).status_code == 200  # kept 1 h

    stored = FalEmulator(result_retention=0.0)

    async def kept(client):  # without X-Fal-Store-IO: 0 fal keeps the payload, result too
        return await completed(client, store_io=True)

    assert raw(stored, "GET", drive(stored, kept).response_url).status_code == 200
    assert len(stored.stored_payloads) == 1


def test_cancel_outcomes_queued_running_completed_and_unknown():
    emulator = FalEmulator(queue_polls=1, progress_polls=5)

    async def body(client):
        queued = await client.submit(APP, {**INPUT, "prompt": "queued"})
        running = await client.submit(APP, {**INPUT, "prompt": "running"})
        while not isinstance(await running.status(), InProgress):
            pass
        done = await completed(client, prompt="done")
        unknown = done.cancel_url.replace(done.request_id, "no-such-id")
        answers = [
            await queued.client.put(url)
            for url in (queued.cancel_url, running.cancel_url, done.cancel_url, unknown)
        ]
        after = [await handle.status() for handle in (queued, running)]
        return queued, running, done, answers, after

    queued, running, done, answers, after = drive(emulator, body)
    assert [(a.status_code, a.json()["status"]) for a in answers] == [
        (200, "OK"),  # removed from the queue
        (202, "CANCELLATION_REQUESTED"),  # running: the app is signalled
        (400, "ALREADY_COMPLETED"),
        (404, "NOT_FOUND"),
    ]
    assert emulator.cancelled == [queued.request_id, running.request_id]
    # Both end COMPLETED with the cancel's error (this app stops on the signal); not billed.
    assert all(isinstance(s, Completed) and s.error == "Request was cancelled" for s in after)
    assert emulator.billed == {done.request_id: emulator.billable_units}


def test_a_running_request_whose_app_ignores_the_cancel_runs_on_and_is_billed():
    emulator = FalEmulator(queue_polls=0, progress_polls=3, app_honours_cancel=False)

    async def body(client):
        handle = await client.submit(APP, INPUT)
        assert isinstance(await handle.status(), InProgress)
        answer = await handle.client.put(handle.cancel_url)
        billed_when_cancelled = emulator.billed
        return handle, answer, billed_when_cancelled, await handle.get(interval=0)

    handle, answer, billed_when_cancelled, result = drive(emulator, body)
    assert (answer.status_code, answer.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    assert billed_when_cancelled == {}  # still running
    assert result == {"output": "A"}
    assert emulator.billed == {handle.request_id: emulator.billable_units}
