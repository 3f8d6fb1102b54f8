"""The emulator's webhooks (`tests/fal_webhook_sender.py`) against fal's "Webhooks" page:
what is posted, how it is signed, the keys it is checked with, retries and the faults.

Deliveries go over real HTTP on loopback to a small aiohttp server here, and their
signatures are checked with `cryptography` directly, not with the backend's receiver.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import fal_client
import httpx
import pytest
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fal_emulator import FalEmulator
from fal_webhook_sender import WebhookSender

APP = "fal-ai/mini-cpm/video"
JWKS = "https://rest.fal.ai/.well-known/jwks.json"


class Inbox:
    """A loopback server keeping every POST (headers, body, when); it answers the
    statuses of `answers` in turn, then 200."""

    def __init__(self, answers: tuple[int, ...] = ()) -> None:
        self.answers = list(answers)
        self.received: list[tuple[dict[str, str], bytes, float]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Inbox:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.received.append((headers, await request.read(), time.monotonic()))
        return web.Response(status=self.answers.pop(0) if self.answers else 200)

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                await asyncio.sleep(0.01)


async def attempts(emulator: FalEmulator, count: int) -> list:
    """The sender's attempts once `count` have been answered (or failed)."""
    async with asyncio.timeout(10):
        while len(emulator.webhooks.attempts) < count:
            await asyncio.sleep(0.01)
    return emulator.webhooks.attempts


def verifies(headers: dict[str, str], body: bytes, jwks: dict[str, Any]) -> bool:
    """Whether a delivery is signed as fal documents, by a key of `jwks`."""
    digest = hashlib.sha256(body).hexdigest()
    fields = ("request-id", "user-id", "timestamp")
    message = "\n".join([*(headers[f"x-fal-webhook-{f}"] for f in fields), digest]).encode()
    signature = bytes.fromhex(headers["x-fal-webhook-signature"])
    for key in jwks["keys"]:
        assert (key["kty"], key["crv"]) == ("OKP", "Ed25519")
        public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(key["x"] + "=="))
        try:
            public.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def exchange(
    emulator: FalEmulator, body: Callable[[fal_client.AsyncClient], Awaitable[Any]]
) -> Any:
    """Run `body` with a fal client, the emulator installed."""
    emulator.webhooks.retry_delay = 0.01

    async def main() -> Any:
        return await body(fal_client.AsyncClient(key="k"))

    with emulator.installed():
        return asyncio.run(main())


async def jwks() -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        return (await client.get(JWKS)).json()


def submit(client: fal_client.AsyncClient, url: str, prompt: str = "p", **headers: str):
    arguments = {"video_url": "https://x/v.mp4", "prompt": prompt}
    return client.submit(APP, arguments, webhook_url=url, headers=headers)


def test_a_request_with_a_webhook_is_delivered_signed_once_it_completes_unpolled():
    emulator = FalEmulator(reply="B", service_time=0.3)

    async def body(client: fal_client.AsyncClient) -> None:
        async with Inbox() as inbox:
            started = time.monotonic()
            handle = await submit(client, inbox.url)
            await inbox.wait_for(1)
            headers, content, at = inbox.received[0]
            assert at - started >= 0.3  # completed by its service time, not by polls
            assert emulator.polls == {}
            delivered = json.loads(content)
            assert delivered == {
                "request_id": handle.request_id,
                "gateway_request_id": handle.request_id,
                "status": "OK",
                "payload": {"output": "B"},
            }
            assert headers["x-fal-webhook-request-id"] == handle.request_id
            assert abs(int(headers["x-fal-webhook-timestamp"]) - time.time()) < 60
            assert verifies(headers, content, await jwks())
            # What was delivered is what the result endpoint serves.
            assert await handle.get() == delivered["payload"]

    exchange(emulator, body)


def test_a_failed_request_is_delivered_as_error_with_its_results_error_body():
    emulator = FalEmulator(fallback_reply="from another model")

    async def body(client: fal_client.AsyncClient) -> None:
        async with Inbox() as inbox:
            handle = await submit(client, inbox.url, **{"x-fal-disable-fallbacks": "true"})
            await inbox.wait_for(1)
            delivered = json.loads(inbox.received[0][1])
            assert delivered["request_id"] == handle.request_id
            assert delivered["status"] == "ERROR"
            assert delivered["error"] == "Invalid status code: 503"
            assert delivered["payload"] == {
                "detail": "No runner available",
                "error_type": "runner_scheduling_failure",
            }

    exchange(emulator, body)


def test_a_delivery_not_answered_2xx_is_retried():
    emulator = FalEmulator()

    async def body(client: fal_client.AsyncClient) -> tuple[list, list]:
        async with Inbox(answers=(500, 401)) as inbox:
            handle = await submit(client, inbox.url)
            answered = [a.status for a in await attempts(emulator, 3)]
            await asyncio.sleep(0.1)  # no fourth
            bodies = {content for _, content, _ in inbox.received}
            assert len(inbox.received) == 3 and len(bodies) == 1  # the same delivery
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
        emulator.webhooks.attempts.clear()
        gone = await submit(client, closed)
        await attempts(emulator, emulator.webhooks.retries + 1)
        await asyncio.sleep(0.1)
        assert {a.request_id for a in emulator.webhooks.attempts} == {gone.request_id}
        assert handle.request_id != gone.request_id
        return answered, [a.status for a in emulator.webhooks.attempts]

    answered, unreachable = exchange(emulator, body)
    assert answered == [500, 401, 200]
    assert unreachable == [None] * 4  # the first try and 3 retries, then it gives up


def test_spoiled_signatures_fail_verification_one_attempt_each():
    emulator = FalEmulator()
    for fault in ("unsigned", "bad_signature", "stale"):
        emulator.webhooks.inject(fault)

    async def body(client: fal_client.AsyncClient) -> None:
        async with Inbox(answers=(401, 401, 401)) as inbox:
            await submit(client, inbox.url)
            await inbox.wait_for(4)
            keys = await jwks()
            (unsigned, _, _), (forged, content, _), (stale, _, _), (good, _, _) = inbox.received
            assert not any(h.startswith("x-fal-webhook-") for h in unsigned)
            assert not verifies(forged, content, keys)
            assert verifies(stale, content, keys)
            assert time.time() - int(stale["x-fal-webhook-timestamp"]) >= 600
            assert verifies(good, content, keys)
            assert [a.fault for a in await attempts(emulator, 4)] == [
                *("unsigned", "bad_signature", "stale"),
                None,
            ]

    exchange(emulator, body)


def test_duplicate_and_late_deliveries():
    emulator = FalEmulator()
    emulator.webhooks.inject("duplicate", copies=2, when=lambda i: i["prompt"] == "twice")
    emulator.webhooks.inject("late", delay=0.5, when=lambda i: i["prompt"] == "late")

    async def body(client: fal_client.AsyncClient) -> None:
        async with Inbox() as inbox:
            twice = await submit(client, inbox.url, "twice")
            await inbox.wait_for(3)
            assert {json.loads(c)["request_id"] for _, c, _ in inbox.received} == {twice.request_id}
            assert len({c for _, c, _ in inbox.received}) == 1
            started = time.monotonic()
            late = await submit(client, inbox.url, "late")
            await inbox.wait_for(4)
            headers, _, at = inbox.received[3]
            assert headers["x-fal-webhook-request-id"] == late.request_id
            assert at - started >= 0.5

    exchange(emulator, body)


def test_a_payload_fal_cannot_serialise_is_delivered_null_with_payload_error():
    emulator = FalEmulator()
    emulator.webhooks.inject("payload_error")

    async def body(client: fal_client.AsyncClient) -> None:
        async with Inbox() as inbox:
            await submit(client, inbox.url)
            await inbox.wait_for(1)
            delivered = json.loads(inbox.received[0][1])
            assert delivered["status"] == "OK" and delivered["payload"] is None
            assert delivered["payload_error"]

    exchange(emulator, body)


def test_the_jwks_holds_the_signing_key_and_follows_a_rotation():
    emulator = FalEmulator()

    async def body(client: fal_client.AsyncClient) -> None:
        async with Inbox() as inbox:
            before = await jwks()
            emulator.webhooks.rotate_key()
            after = await jwks()
            assert before["keys"][0]["x"] != after["keys"][0]["x"]
            await submit(client, inbox.url)
            await inbox.wait_for(1)
            headers, content, _ = inbox.received[0]
            assert verifies(headers, content, after)
            assert not verifies(headers, content, before)

    exchange(emulator, body)


def test_a_webhook_url_off_loopback_is_never_reached():
    emulator = FalEmulator()

    async def body(client: fal_client.AsyncClient) -> list:
        await submit(client, "https://hooks.example.com/fal")
        return await attempts(emulator, emulator.webhooks.retries + 1)

    made = exchange(emulator, body)
    assert [a.status for a in made] == [None] * 4


def test_an_unknown_webhook_fault_is_refused():
    with pytest.raises(ValueError, match="unknown webhook fault"):
        FalEmulator().webhooks.inject("lost")


def test_a_synchronous_clients_submit_is_delivered_too():
    emulator = FalEmulator(reply="D")

    async def body(client: fal_client.AsyncClient) -> None:
        async with Inbox() as inbox:
            arguments = {"video_url": "https://x/v.mp4", "prompt": "p"}
            sync = fal_client.SyncClient(key="k")
            handle = await asyncio.to_thread(sync.submit, APP, arguments, webhook_url=inbox.url)
            await inbox.wait_for(1)
            delivered = json.loads(inbox.received[0][1])
            assert (delivered["request_id"], delivered["payload"]) == (
                handle.request_id,
                {"output": "D"},
            )

    exchange(emulator, body)


def test_deliveries_sent_from_a_loop_of_their_own_arrive_and_it_closes_cleanly():
    """As perf sends them: from a thread and event loop apart from the receiving run's."""
    sender = WebhookSender(own_loop=True)
    emulator = FalEmulator(webhooks=sender)

    async def body(client: fal_client.AsyncClient) -> None:
        async with Inbox() as inbox:
            handle = await submit(client, inbox.url)
            await inbox.wait_for(1)
            assert json.loads(inbox.received[0][1])["request_id"] == handle.request_id

    try:
        exchange(emulator, body)
    finally:
        sender.close()
    assert [attempt.status for attempt in sender.attempts] == [200]
    assert not any(thread.name == "fal-webhooks" for thread in threading.enumerate())
