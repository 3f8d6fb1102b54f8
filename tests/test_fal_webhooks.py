"""fal's webhooks, received (`backends/fal_webhooks.py`) and used by the `fal` backend
(`-B webhook_url=...`), against the emulator's signed deliveries on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import fal_client
import fal_client.client
import pytest
from fal_emulator import FalEmulator
from record_fal import guessing_reply

from backends.fal import _delivery_error
from backends.fal_webhooks import Delivery, WebhookReceiver
from harness.cli import main
from harness.run.store import read_records

APP = "fal-ai/mini-cpm/video"
LOGGER = "backends.fal_webhooks"


@pytest.fixture(autouse=True)
def fal_key(monkeypatch):
    monkeypatch.setenv("FAL_KEY", "test-key-id:test-key-secret")
    monkeypatch.setattr(fal_client.client, "_get_retry_delay", lambda *args, **kwargs: 0.0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the receiver ------------------------------------------------------------------


def receive(
    emulator: FalEmulator,
    body: Callable[[WebhookReceiver, fal_client.AsyncClient, str], Awaitable[Any]],
    **options: Any,
) -> tuple[WebhookReceiver, Any]:
    """Run `body` with a started receiver, a fal client and the webhook URL to submit with."""
    emulator.webhooks.retry_delay = 0.01
    port = free_port()
    receiver = WebhookReceiver("127.0.0.1", port, **options)

    async def run() -> Any:
        await receiver.start()
        try:
            url = f"http://127.0.0.1:{port}/fal/webhook"
            result = await body(receiver, fal_client.AsyncClient(key="k"), url)
            await emulator.webhooks.drain()  # every attempt answered
            return result
        finally:
            await receiver.close()

    with emulator.installed():
        return receiver, asyncio.run(run())


def submit(client: fal_client.AsyncClient, url: str, prompt: str = "p"):
    return client.submit(APP, {"video_url": "https://x/v.mp4", "prompt": prompt}, webhook_url=url)


def jwks_fetches(emulator: FalEmulator) -> int:
    return sum(url.endswith("/.well-known/jwks.json") for _, url in emulator.requests)


def test_verified_deliveries_are_handed_to_their_waiters_with_keys_fetched_once():
    emulator = FalEmulator(reply="C", service_time=0.2)

    async def body(receiver, client, url):
        handles = [await submit(client, url, f"q{i}") for i in range(3)]
        return await asyncio.gather(*(receiver.delivery(h.request_id, 10) for h in handles))

    receiver, deliveries = receive(emulator, body)
    assert [(d.status, d.payload) for d in deliveries] == [("OK", {"output": "C"})] * 3
    assert receiver.counts == {"delivered": 3}
    assert jwks_fetches(emulator) == 1 and emulator.polls == {}


def test_a_delivery_that_comes_before_its_wait_is_kept_for_it():
    emulator = FalEmulator()

    async def body(receiver, client, url):
        handle = await submit(client, url)
        while not emulator.webhooks.attempts:
            await asyncio.sleep(0.01)
        return await receiver.delivery(handle.request_id, 0)

    _, delivery = receive(emulator, body)
    assert delivery is not None and delivery.status == "OK"


@pytest.mark.parametrize("fault", ["unsigned", "bad_signature", "stale"])
def test_a_spoiled_delivery_is_refused_logged_and_counted_then_its_retry_accepted(fault, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    emulator = FalEmulator(reply="secret answer text")
    emulator.webhooks.inject(fault)

    async def body(receiver, client, url):
        handle = await submit(client, url)
        return handle.request_id, await receiver.delivery(handle.request_id, 10)

    receiver, (request_id, delivery) = receive(emulator, body)
    assert delivery is not None and delivery.payload == {"output": "secret answer text"}
    assert [a.status for a in emulator.webhooks.attempts] == [401, 200]
    assert receiver.counts == {fault: 1, "delivered": 1}
    refused = 0 if fault == "unsigned" else 1  # an unsigned delivery names no request
    assert receiver.seen(request_id) == {"duplicates": 0, "late": 0, "refused": refused}
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    named = "not named" if fault == "unsigned" else request_id
    assert line == f"fal webhook refused ({fault}): request {named}, from 127.0.0.1"


def test_a_rotated_key_is_fetched_again_once():
    emulator = FalEmulator()

    async def body(receiver, client, url):
        first = await submit(client, url)
        await receiver.delivery(first.request_id, 10)
        emulator.webhooks.rotate_key()
        second = await submit(client, url)
        return await receiver.delivery(second.request_id, 10)

    _, delivery = receive(emulator, body, refetch_gap_s=0)
    assert delivery is not None
    assert [a.status for a in emulator.webhooks.attempts] == [200, 200]
    assert jwks_fetches(emulator) == 2


def test_keys_are_not_fetched_again_within_the_gap(caplog):
    """A forged delivery asks for the keys again only once the gap has passed."""
    emulator = FalEmulator()
    emulator.webhooks.inject("bad_signature", times=4)
    emulator.webhooks.retries = 3

    async def body(receiver, client, url):
        handle = await submit(client, url)
        return await receiver.delivery(handle.request_id, 0.5)

    receiver, delivery = receive(emulator, body)
    assert delivery is None and receiver.counts == {"bad_signature": 4}
    assert jwks_fetches(emulator) == 1


def test_a_delivery_without_keys_to_check_it_is_refused_503(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    emulator = FalEmulator()
    emulator.webhooks.retries = 0

    async def body(receiver, client, url):
        handle = await submit(client, url)
        return await receiver.delivery(handle.request_id, 0.5)

    unroutable = "https://keys.invalid/.well-known/jwks.json"  # the emulator routes no such host
    receiver, delivery = receive(emulator, body, jwks_url=unroutable)
    assert delivery is None and receiver.counts == {"no_keys": 1}
    assert [a.status for a in emulator.webhooks.attempts] == [503]
    assert any("cannot fetch fal's webhook keys" in r.getMessage() for r in caplog.records)


def test_duplicates_and_late_deliveries_are_answered_200_and_ignored():
    emulator = FalEmulator()
    emulator.webhooks.inject("duplicate", copies=2, when=lambda i: i["prompt"] == "twice")
    emulator.webhooks.inject("late", delay=0.3, when=lambda i: i["prompt"] == "late")

    async def body(receiver, client, url):
        twice = await submit(client, url, "twice")
        delivered = await receiver.delivery(twice.request_id, 10)
        late = await submit(client, url, "late")
        missed = await receiver.delivery(late.request_id, 0.05)
        await emulator.webhooks.drain()
        return delivered, missed, receiver.seen(twice.request_id), receiver.seen(late.request_id)

    receiver, (delivered, missed, twice_seen, late_seen) = receive(emulator, body)
    assert delivered is not None and missed is None
    assert [a.status for a in emulator.webhooks.attempts] == [200] * 4
    assert receiver.counts == {"delivered": 1, "duplicates": 2, "late": 1}
    assert twice_seen["duplicates"] == 2 and late_seen["late"] == 1


# -- the backend, through the command line -------------------------------------------


def run(emulator, tmp_path, cache, *options: str, limit=2, deadline=30.0, extra=(), webhook=True):
    """A fal run in webhook mode (receiver on a free port): (exit status, records)."""
    emulator.webhooks.retry_delay = 0.01
    args = ["run", "--backend", "fal", "-B", "poll_interval=0.01", "-B", "poll_max_interval=0.05"]
    if webhook:
        args += ["-B", f"webhook_url=http://127.0.0.1:{free_port()}/fal/webhook"]
    for option in options:
        args += ["-B", option]
    args += ["-S", f"cache_dir={cache}", "--limit", str(limit), "--deadline", str(deadline), *extra]
    with emulator.installed():
        code = main([*args, "--no-progress", "--out", str(tmp_path), "--run-id", "r"])
    path = tmp_path / "r/records.jsonl"
    return code, read_records(path).records if path.exists() else []


def test_samples_answered_by_webhook_make_no_status_polls(tmp_path, synthetic_cache):
    emulator = FalEmulator(reply=guessing_reply, service_time=0.2)
    code, records = run(emulator, tmp_path, synthetic_cache, limit=3)
    assert code == 0 and len(records) == 3 and all(r.ok for r in records)
    assert emulator.polls == {}  # not even fal-client's own, before a result fetch
    results = [url for method, url in emulator.requests if method == "GET" and "/requests/" in url]
    assert len(results) == 3  # each result read once, for what fal billed
    for record in records:
        assert record.meta["polls"] == 0
        assert record.meta["billing"]["units"] == emulator.billable_units
        webhook = record.meta["webhook"]
        assert webhook["outcome"] == "delivered" and webhook["status"] == "OK"
        assert webhook["after_s"] >= 0.2
        ((seen_at, *state),) = record.meta["states"]
        assert state == ["COMPLETED", None] and seen_at >= webhook["after_s"]
        assert "queue" not in record.timings and "inference" not in record.timings
    manifest = json.loads((tmp_path / "r/manifest.json").read_text())
    described = manifest["backend"]["describe"]
    assert described["results"] == "by webhook"
    assert described["webhook_url"].endswith("/fal/webhook")
    assert "queue and inference times" in described["not_measured"]


def test_a_refused_delivery_is_logged_and_counted_on_its_sample(tmp_path, synthetic_cache, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    emulator = FalEmulator(reply=guessing_reply)
    emulator.webhooks.inject("stale")
    code, records = run(emulator, tmp_path, synthetic_cache, extra=["--concurrency", "1"])
    assert code == 0 and all(r.ok for r in records)
    refused = [r.meta["webhook"]["refused"] for r in records]
    assert sorted(refused) == [0, 1]
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1 and lines[0].startswith("fal webhook refused (stale): request ")


def test_a_duplicate_delivery_is_ignored(tmp_path, synthetic_cache, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    emulator = FalEmulator(reply=guessing_reply, service_time=0.2)
    emulator.webhooks.inject("duplicate", copies=2)  # the first request's, with 1 in flight
    code, records = run(emulator, tmp_path, synthetic_cache, extra=["--concurrency", "1"])
    assert code == 0 and len(records) == 2 and all(r.ok for r in records)
    # The first request's delivery and its copies, all before the second was submitted.
    assert [a.status for a in emulator.webhooks.attempts[:3]] == [200] * 3
    assert "fal webhooks received: 2 delivered, 2 duplicates" in caplog.messages


def test_a_request_whose_webhook_is_late_is_polled(tmp_path, synthetic_cache, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    emulator = FalEmulator(reply=guessing_reply, queue_polls=0)
    emulator.webhooks.inject("late", delay=5.0)
    code, records = run(emulator, tmp_path, synthetic_cache, "webhook_wait=0.3", limit=1)
    (record,) = records
    assert code == 0
    (line,) = caplog.messages
    assert line.startswith(f"no fal webhook for request {record.meta['request_id']} within 0.3 s")
    assert record.ok and record.meta["polls"] >= 1 and emulator.polls
    assert record.meta["webhook"] == {
        "outcome": "none in time: polled",
        "wait_s": 0.3,
        "duplicates": 0,
        "late": 0,
        "refused": 0,
    }
    assert "queue" not in record.timings  # the first poll found it no longer queued
    assert record.timings["inference"] == 0.42


def test_the_wait_for_a_webhook_ends_before_the_samples_deadline(tmp_path, synthetic_cache):
    emulator = FalEmulator(reply=guessing_reply)
    emulator.webhooks.inject("late", delay=10.0)
    args = ("webhook_wait=100",)
    _, records = run(emulator, tmp_path, synthetic_cache, *args, limit=1, deadline=2.0)
    (record,) = records
    assert record.ok and record.meta["webhook"]["outcome"] == "none in time: polled"
    assert 1.0 < record.meta["webhook"]["wait_s"] < 2.0  # the deadline less one poll


def test_an_error_delivery_fails_its_sample_with_fals_error(tmp_path, synthetic_cache):
    emulator = FalEmulator(reply=guessing_reply, fallback_reply="another model's answer")
    _, records = run(emulator, tmp_path, synthetic_cache, limit=1)
    (record,) = records
    assert not record.ok and emulator.polls == {}
    assert record.error.kind == "runner_scheduling_failure"
    assert record.error.message == "No runner available"
    details = record.error.details
    assert details["status_code"] == 503
    assert details["webhook_error"] == "Invalid status code: 503"
    assert details["webhook"]["status"] == "ERROR" and details["last_state"] == "COMPLETED"
    assert "cancel" not in details


def test_a_delivery_without_its_payload_answers_from_the_result_all_the_same(
    tmp_path, synthetic_cache
):
    emulator = FalEmulator(reply="The answer is B.")
    emulator.webhooks.inject("payload_error")
    _, records = run(emulator, tmp_path, synthetic_cache, limit=1)
    (record,) = records
    assert record.ok and record.response == "The answer is B."
    assert record.meta["polls"] == 0 and record.meta["webhook"]["outcome"] == "delivered"
    assert emulator.polls == {}


def test_an_error_delivery_naming_no_status_fails_as_webhook_error():
    delivery = Delivery("rid", "ERROR", "Request failed", None, received=0.0)
    error = _delivery_error(delivery)
    assert (error.kind, error.message) == ("webhook_error", "Request failed")
    assert error.details == {"request_id": "rid", "webhook_error": "Request failed"}


def test_a_receiver_that_cannot_listen_fails_its_samples(tmp_path, synthetic_cache):
    emulator = FalEmulator(reply=guessing_reply)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        url = f"webhook_url=http://127.0.0.1:{port}/hook"
        _, records = run(emulator, tmp_path, synthetic_cache, url, limit=1, webhook=False)
    (record,) = records
    assert record.error.kind == "webhook_listen"
    assert record.error.message.startswith(f"cannot listen on 127.0.0.1:{port}: ")


@pytest.mark.parametrize("flag", ["--record", "--replay"])
def test_webhooks_are_refused_under_record_and_replay(flag, tmp_path, synthetic_cache, capsys):
    cassette = tmp_path / "cassette"
    if flag == "--replay":  # a recording of the same run, by status polls
        recorded = run(
            FalEmulator(reply=guessing_reply),
            tmp_path / "recorded",
            synthetic_cache,
            extra=["--record", str(cassette)],
            webhook=False,
        )
        assert recorded[0] == 0
        capsys.readouterr()
    emulator = FalEmulator(reply=guessing_reply)
    code, records = run(emulator, tmp_path, synthetic_cache, extra=[flag, str(cassette)])
    assert code == 2 and not records and not (tmp_path / "r").exists()
    assert emulator.submitted == {}
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"vqa-harness: error: backend 'fal': webhook_url cannot be used with {flag}: fal "
        "posts results to the receiver, which a cassette cannot record or replay"
    ]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["webhook_url=ftp://example.com:21/hook"], "must be an http(s) URL with a host"),
        (["webhook_url=https://hooks.example.com/fal"], "names no port"),
        (["webhook_url=https://user:pw@example.com:8443/"], "must not carry credentials"),
        (["webhook_url=http://127.0.0.1:99999/"], "has a bad port"),
        (["webhook_url=https://x.example/", "webhook_listen=nowhere"], "must be HOST:PORT"),
        (["webhook_url=https://x.example/", "webhook_listen=[::1]:0"], "must be HOST:PORT"),
        (["webhook_listen=127.0.0.1:8080"], "is used only with webhook_url"),
        (["webhook_url=http://127.0.0.1:8080/", "webhook_wait=0"], "webhook_wait must be"),
    ],
)
def test_bad_webhook_options_are_one_line(options, says, tmp_path, synthetic_cache, capsys):
    code, _ = run(FalEmulator(), tmp_path, synthetic_cache, *options, webhook=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and says in err[0]
