"""fal's webhook deliveries, emulated for `FalEmulator`: signed with the emulator's own keys.

As fal's documentation describes them (docs.fal.ai "Webhooks", under Model APIs >
Inference, read 2026-12; `backends/fal_webhooks.py` says what it documents): when a
request submitted with `?fal_webhook=URL` completes, fal POSTs `{request_id,
gateway_request_id, status: OK|ERROR, payload, error}` to the URL; a delivery not
answered 2xx is retried (fal: 10 times over 2 hours; here `retries` times, the wait
doubling from `retry_delay`); each is signed with ED25519 over request id, user id,
timestamp and the hex sha256 of the body, joined by newlines, in the headers
`X-Fal-Webhook-Request-Id`, `-User-Id`, `-Timestamp` and `-Signature` (hex), and the
public keys are a JWKS document (OKP/Ed25519, base64url `x`), which the emulator serves
at fal's JWKS URL through its routing. Stand-ins where the documents say nothing: an
ERROR's `error` is "Invalid status code: N" and its payload the result's error body
(the documents' example has that form); each attempt is signed anew, with its own
timestamp; `gateway_request_id` is the request id (the emulator never re-runs one).

Deliveries are real HTTP, made with aiohttp's client, which the emulator's routing of
httpx does not catch (an httpx client would need its own transport for that, and costs
several times more per request: the deliveries' cost is fal's, not the client's under
test, yet here it is paid in the same process and event loop); and only to loopback
hosts: an attempt to any other host fails at once as unreachable, so no test reaches
the network. By default they are sent from the event loop of the submit; `own_loop`
sends them from an event loop and thread of their own (as fal's servers are not part
of the process they deliver to), which `close` ends: `perf/remote.py` measures so.

Faults (`inject`), matched in injection order against the submit's input (`when`):
per delivery, "late" (`delay` seconds after completion), "duplicate" (`copies` more
deliveries of the same one after it was accepted) and "payload_error" (the payload
null and `payload_error` set, as fal sends a result it cannot serialise, its page
says; the text is a stand-in); per attempt, "unsigned" (no
signature headers), "bad_signature" (signed by a key the JWKS does not hold) and
"stale" (signed `age` seconds ago, 600 by default). `rotate_key` makes a new key the
one that signs, and serves only it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import json
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

JWKS_PATH = "/.well-known/jwks.json"
WEBHOOK_FAULTS = ("late", "duplicate", "payload_error", "unsigned", "bad_signature", "stale")
_PER_DELIVERY = ("late", "duplicate", "payload_error")
USER_ID = "emulated-user"


@dataclass
class WebhookFault:
    kind: str
    times: int
    when: Callable[[dict], bool] | None
    params: dict[str, Any]


@dataclass(frozen=True)
class Attempt:
    """One POST to a webhook URL: the request, the fault it carried, what it got back
    (the HTTP status, or None when it could not connect)."""

    request_id: str
    fault: str | None
    status: int | None


class WebhookSender:
    """Signs and delivers fal's webhooks; `attempts` lists every POST made."""

    def __init__(
        self, *, retries: int = 3, retry_delay: float = 0.2, own_loop: bool = False
    ) -> None:
        self.retries = retries
        self.retry_delay = retry_delay
        self.attempts: list[Attempt] = []
        self._key = Ed25519PrivateKey.generate()
        self._kid = uuid.uuid4().hex[:16]
        self._faults: list[WebhookFault] = []
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        # Each event loop's session, and the task that closes it when the loop ends.
        self._sessions: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, asyncio.Task[None]]
        ] = weakref.WeakKeyDictionary()
        # With `own_loop`, deliveries run in an event loop and thread of their own, as fal's
        # servers are not part of the process they deliver to (`close` ends them).
        self._own: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None
        if own_loop:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="fal-webhooks", daemon=True)
            thread.start()
            self._own = loop, thread

    def inject(
        self,
        fault: str,
        *,
        times: int = 1,
        when: Callable[[dict], bool] | None = None,
        **params: Any,
    ) -> None:
        """Give the next `times` deliveries (or attempts) matching `when` `fault`."""
        if fault not in WEBHOOK_FAULTS:
            raise ValueError(f"unknown webhook fault {fault!r}; known: {', '.join(WEBHOOK_FAULTS)}")
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(WebhookFault(fault, times, when, params))

    def rotate_key(self) -> None:
        """Sign with a new key from now on; the JWKS holds only it."""
        self._key, self._kid = Ed25519PrivateKey.generate(), uuid.uuid4().hex[:16]

    def jwks(self) -> dict[str, Any]:
        """The JWKS document fal publishes its webhook keys in."""
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        key = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self._kid, "alg": "EdDSA"}
        return {"keys": [key]}

    def jwks_response(self) -> httpx.Response:
        return httpx.Response(200, json=self.jwks())

    def schedule(
        self,
        request_id: str,
        url: str,
        after: float,
        subject: dict,
        outcome: Callable[[], tuple[int, Any] | float],
    ) -> None:
        """Deliver the request's outcome to `url` `after` seconds from now, or later: `outcome`
        completes the request and says what its result endpoint answers then (status,
        body), or in how many seconds to ask again (it has not run yet); `subject` is the
        submit's input, for the faults' `when`."""
        work = self._deliver(request_id, url, after, subject, outcome)
        if self._own is not None:
            asyncio.run_coroutine_threadsafe(self._kept(work), self._own[0])
            return
        try:
            self._keep(asyncio.get_running_loop().create_task(work))
        except RuntimeError:  # a submit from a synchronous client: deliver from a thread
            threading.Thread(target=asyncio.run, args=(work,), daemon=True).start()

    async def drain(self) -> None:
        """Wait until the deliveries under way in this event loop have ended."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(task for task in self._tasks if task.get_loop() is loop))

    def close(self) -> None:
        """End the deliveries' own event loop and thread (`own_loop`), closing its session."""
        if self._own is None:
            return
        loop, thread = self._own
        self._own = None

        async def finish() -> None:
            tasks = [task for task in self._tasks if task.get_loop() is loop]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if loop in self._sessions:
                session, closer = self._sessions.pop(loop)
                closer.cancel()
                await session.close()

        asyncio.run_coroutine_threadsafe(finish(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    async def _kept(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a task of the running loop that `close` can find."""
        task = asyncio.get_running_loop().create_task(work)
        self._keep(task)
        await asyncio.gather(task, return_exceptions=True)

    # -- delivering -----------------------------------------------------------------

    async def _deliver(
        self,
        request_id: str,
        url: str,
        after: float,
        subject: dict,
        outcome: Callable[[], tuple[int, Any] | float],
    ) -> None:
        await asyncio.sleep(after)
        while isinstance(answer := outcome(), float):  # not completed yet: ask again then
            await asyncio.sleep(answer)
        status, result = answer
        body = {"request_id": request_id, "gateway_request_id": request_id}
        body["status"] = "OK" if status == 200 else "ERROR"
        body["payload"] = result
        if status != 200:
            body["error"] = f"Invalid status code: {status}"
        fault = self._match(subject, _PER_DELIVERY)
        if fault is not None and fault.kind == "payload_error":
            body["payload"] = None
            body["payload_error"] = "Response payload is not JSON serializable"
        content = json.dumps(body).encode()
        if fault is not None and fault.kind == "late":
            await asyncio.sleep(float(fault.params.get("delay", 1.0)))
        copies = int(fault.params.get("copies", 1)) if fault and fault.kind == "duplicate" else 0
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
            if await self._post(url, request_id, content, self._match(subject)):
                for _ in range(copies):
                    await self._post(url, request_id, content, None)
                return

    async def _post(
        self, url: str, request_id: str, content: bytes, fault: WebhookFault | None
    ) -> bool:
        """One attempt; whether the receiver answered 2xx."""
        status = None
        if _loopback(url):
            headers = {
                "content-type": "application/json",
                **self._signed(request_id, content, fault),
            }
            try:
                async with self._session().post(url, data=content, headers=headers) as response:
                    status = response.status
            except aiohttp.ClientError:
                pass
        self.attempts.append(Attempt(request_id, fault.kind if fault else None, status))
        return status is not None and 200 <= status < 300

    def _signed(
        self, request_id: str, content: bytes, fault: WebhookFault | None
    ) -> dict[str, str]:
        """The signature headers, as `fault` (unsigned, bad_signature, stale) spoils them."""
        kind = fault.kind if fault else None
        if kind == "unsigned":
            return {}
        stamp = int(time.time()) - (
            int(fault.params.get("age", 600)) if fault and kind == "stale" else 0
        )
        digest = hashlib.sha256(content).hexdigest()
        message = "\n".join((request_id, USER_ID, str(stamp), digest)).encode()
        key = Ed25519PrivateKey.generate() if kind == "bad_signature" else self._key
        return {
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": USER_ID,
            "X-Fal-Webhook-Timestamp": str(stamp),
            "X-Fal-Webhook-Signature": key.sign(message).hex(),
        }

    def _session(self) -> aiohttp.ClientSession:
        """The session of this event loop, its connections kept for the next deliveries
        until the loop ends."""
        loop = asyncio.get_running_loop()
        if loop not in self._sessions:
            session = aiohttp.ClientSession()
            self._sessions[loop] = session, loop.create_task(_close_at_end(session))
        return self._sessions[loop][0]

    def _keep(self, task: asyncio.Task[None]) -> None:
        """Hold a reference to `task` until it is done (the loop holds only weak ones)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _match(
        self, subject: dict, kinds: tuple[str, ...] = ("unsigned", "bad_signature", "stale")
    ) -> WebhookFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind not in kinds or fault.times <= 0:
                    continue
                if fault.when is not None and not fault.when(subject):
                    continue
                fault.times -= 1
                return fault
        return None


async def _close_at_end(session: aiohttp.ClientSession) -> None:
    """Hold `session` open until its event loop ends (`asyncio.run` cancels this), then close it."""
    try:
        await asyncio.Event().wait()
    finally:
        await session.close()


def _loopback(url: str) -> bool:
    host = httpx.URL(url).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
