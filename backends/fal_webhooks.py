"""fal's webhooks, received: a local HTTP receiver (aiohttp) that verifies each delivery.

As fal's documentation describes them (docs.fal.ai "Webhooks", under Model APIs >
Inference, read 2026-12): a request submitted with `?fal_webhook=URL` (fal-client's
`webhook_url=`) is POSTed to that URL when it completes, as JSON `{request_id,
gateway_request_id, status: OK|ERROR, payload, error}`; a delivery that is not
answered 2xx is retried (10 times over 2 hours), so the same one may come more than
once. Each delivery is signed with ED25519: headers `X-Fal-Webhook-Request-Id`,
`-User-Id`, `-Timestamp` (Unix seconds) and `-Signature` (hex), over the request id,
user id, timestamp and the hex sha256 of the raw body, joined by newlines. The keys
are fal's JWKS (`JWKS_URL`: OKP/Ed25519 entries, the key in base64url `x`), to be
cached up to 24 h; a timestamp more than 300 s from the local clock is refused.

A delivery names no key, so it is checked against every key of the JWKS; one that no
cached key verifies has the keys fetched again first (keys rotate), at most every
`refetch_gap_s`. Unsigned, badly signed, stale or unreadable deliveries are refused
(non-2xx, so fal retries them) with one warning line each, naming the reason, the
request id the delivery claims and its peer (never its body); every outcome is counted
in `counts`, and per request in `seen`. A verified delivery of a request already
delivered, or of one no longer waited on, is answered 200 and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from harness.protocols import note, time_left
from harness.types import BackendError

JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
TOLERANCE_S = 300.0
"""How far a delivery's timestamp may be from the local clock (fal's documented window)."""
KEYS_TTL_S = 24 * 3600.0
"""How long fetched keys are used before they are fetched again (fal: cache up to 24 h)."""
REFETCH_GAP_S = 10.0
"""The least time between two fetches of the keys, so refused deliveries cannot make
the receiver ask fal for its keys on every one."""
JWKS_TIMEOUT_S = 10.0
EARLY_KEPT = 10_000
"""Deliveries kept for requests not (yet) waited on: one can arrive before its submit's
answer does; the oldest go first."""

REQUEST_ID = "X-Fal-Webhook-Request-Id"
USER_ID = "X-Fal-Webhook-User-Id"
TIMESTAMP = "X-Fal-Webhook-Timestamp"
SIGNATURE = "X-Fal-Webhook-Signature"

NOT_MEASURED = (
    "queue and inference times, queue positions and fal's logs: a request answered by "
    "webhook is never polled, and a delivery carries none of them"
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """A verified delivery: fal's outcome for one request."""

    request_id: str
    status: str  # "OK" or "ERROR"
    error: str | None
    payload: Any  # the result, or for an ERROR its error body; None if fal could not send it
    received: float  # time.perf_counter() when it arrived

    def http_status(self) -> int | None:
        """The HTTP status an ERROR's result answers, which fal's `error` names
        ("Invalid status code: 422" in its documentation); None if it names none."""
        found = re.search(r"\b([1-5]\d\d)\b", self.error or "")
        return int(found[1]) if found else None


def listen_address(url: str | None, listen: str | None) -> tuple[str, int]:
    """Where the receiver binds: `listen` ("HOST:PORT", "[v6]:PORT"), else 127.0.0.1 and
    the port `url` names. Raises `ValueError` with one line on a bad value."""
    if url is None:
        raise ValueError("webhook_listen is used only with webhook_url")
    parts = urlsplit(url)
    try:
        url_port = parts.port
    except ValueError:
        raise ValueError(f"webhook_url has a bad port: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"webhook_url must be an http(s) URL with a host, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("webhook_url must not carry credentials (user:password@)")
    if listen is None:
        if url_port is None:
            raise ValueError(
                f"webhook_url {url!r} names no port: say where the receiver listens "
                "(the local end of your tunnel) with webhook_listen=HOST:PORT"
            )
        return "127.0.0.1", url_port
    host, _, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"webhook_listen must be HOST:PORT (port 1-65535), got {listen!r}")
    return host, int(port)


class WebhookMode:
    """The fal backend's webhook mode: its options, checked, and its receiver, started
    on first use in a run's event loop and closed at the run's end."""

    def __init__(self, url: str | None, listen: str | None, wait_s: float) -> None:
        self.host, self.port = listen_address(url, listen)
        self.url = url
        self.wait_s = wait_s
        self.receiver: WebhookReceiver | None = None
        self._polled = False  # whether a request was polled for want of a delivery

    def describe(self) -> dict[str, Any]:
        """For the manifest: where fal posts, where the receiver listens, how it checks
        deliveries, and what cannot be measured in this mode."""
        return {
            "results": "by webhook",
            "webhook_url": self.url,
            "webhook_listen": f"{self.host}:{self.port}",
            "webhook_wait": f"{self.wait_s:g} s, then status polls",
            "webhook_verification": f"ED25519, keys from {JWKS_URL}, +-{TOLERANCE_S:g} s",
            "not_measured": NOT_MEASURED,
        }

    async def start(self) -> None:
        """Have the receiver listening (it is started once); a `BackendError` if it cannot."""
        if self.receiver is None:
            self.receiver = WebhookReceiver(self.host, self.port)
        try:
            await self.receiver.start()
        except OSError as exc:
            where = f"{self.host}:{self.port}"
            raise BackendError("webhook_listen", f"cannot listen on {where}: {exc}") from exc

    async def delivery(
        self, request_id: str, submitted: float, facts: dict[str, Any], margin: float
    ) -> Delivery | None:
        """The request's delivery, waiting `wait_s` at most, and no later than `margin`
        seconds before the sample's deadline; None if none came. `facts` (noted for the
        sample as `webhook`) say how it went: the outcome, the wait, and for a delivery
        its time after the submit (`submitted`, a `time.perf_counter()`), its status and
        what else came for the request by then. Call `start` first."""
        assert self.receiver is not None
        left = time_left()
        bound = self.wait_s if left is None else min(self.wait_s, left - margin)
        facts.update(outcome="waiting", wait_s=round(max(bound, 0.0), 3))
        note(webhook=facts)
        delivery = await self.receiver.delivery(request_id, bound)
        if delivery is None:
            facts["outcome"] = "none in time: polled"
            if not self._polled:  # once a run: a tunnel that is down looks like this
                self._polled = True
                log.warning(
                    "no fal webhook for request %s within %g s: polling it instead "
                    "(does %s reach %s:%d?)",
                    _shown(request_id),
                    max(bound, 0.0),
                    self.url,
                    self.host,
                    self.port,
                )
            return None
        facts.update(
            outcome="delivered",
            after_s=round(delivery.received - submitted, 3),
            status=delivery.status,
            **self.seen(request_id),
        )
        return delivery

    def seen(self, request_id: str) -> dict[str, int]:
        """What else came for the request: duplicates, late and refused deliveries."""
        return self.receiver.seen(request_id) if self.receiver else {}

    async def close(self) -> None:
        if self.receiver is not None:
            receiver, self.receiver = self.receiver, None
            await receiver.close()


def _shown(text: str | None) -> str:
    """A header value fit for one log line: short, printable."""
    if not text:
        return "not named"
    return "".join(c if c.isprintable() else "?" for c in text[:80])


def _public_keys(document: Any) -> list[Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS document; entries of other kinds, or unreadable, are skipped."""
    keys = []
    entries = document.get("keys") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict) or (entry.get("kty"), entry.get("crv")) != (
            "OKP",
            "Ed25519",
        ):
            continue
        x = entry.get("x")
        try:
            raw = base64.urlsafe_b64decode(str(x) + "=" * (-len(str(x)) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (ValueError, binascii.Error):
            continue
    return keys


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """What fal signs for one delivery."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((request_id, user_id, timestamp, digest)).encode()


class WebhookReceiver:
    """Receives and verifies fal's deliveries on `host`:`port`, on any path; `delivery`
    waits for one request's. Start with `start`, stop with `close`, in one event loop."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        jwks_url: str = JWKS_URL,
        tolerance_s: float = TOLERANCE_S,
        keys_ttl_s: float = KEYS_TTL_S,
        refetch_gap_s: float = REFETCH_GAP_S,
    ) -> None:
        self.host, self.port = host, port
        self.jwks_url = jwks_url
        self.tolerance_s = tolerance_s
        self.keys_ttl_s = keys_ttl_s
        self.refetch_gap_s = refetch_gap_s
        self.counts: Counter[str] = Counter()
        """Deliveries by outcome: delivered, duplicates, late, or why one was refused
        (unsigned, bad_signature, stale, malformed, no_keys)."""
        self._keys: list[Ed25519PublicKey] = []
        self._keys_at: float | None = None  # time.monotonic() of the last fetch
        self._tried_at: float | None = None  # ... and of the last attempt
        self._runner: web.AppRunner | None = None
        self._starting = asyncio.Lock()
        self._fetching = asyncio.Lock()  # the keys, one fetch at a time
        self._waiting: dict[str, asyncio.Future[Delivery]] = {}
        self._early: dict[str, Delivery] = {}
        self._closed: dict[str, bool] = {}  # request id -> delivered (True) or given up
        self._seen: dict[str, Counter[str]] = {}

    async def start(self) -> None:
        """Listen (once; later calls return at once). Raises `OSError` when it cannot."""
        async with self._starting:
            if self._runner is not None:
                return
            app = web.Application()
            app.router.add_post("/{path:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, self.host, self.port).start()
            except BaseException:
                await runner.cleanup()
                raise
            self._runner = runner

    async def close(self) -> None:
        """Stop listening; say once what was received."""
        if self._runner is None:
            return
        await self._runner.cleanup()
        self._runner = None
        counts = ", ".join(f"{n} {what}" for what, n in sorted(self.counts.items())) or "nothing"
        unclaimed = f"; {len(self._early)} for requests never waited on" if self._early else ""
        log.info("fal webhooks received: %s%s", counts, unclaimed)

    async def delivery(self, request_id: str, timeout: float) -> Delivery | None:
        """The request's first verified delivery, waiting at most `timeout` seconds; None
        when none came. After this the request is no longer waited on: later deliveries
        of it are duplicates (it was delivered) or late (it was not)."""
        delivered = self._early.pop(request_id, None)
        if delivered is not None:
            self._closed[request_id] = True
            return delivered
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            return await asyncio.wait_for(future, max(timeout, 0.0))
        except TimeoutError:
            return None
        finally:
            del self._waiting[request_id]
            self._closed[request_id] = future.done() and not future.cancelled()

    def seen(self, request_id: str) -> dict[str, int]:
        """What else came for one request: duplicates, late and refused deliveries."""
        seen = self._seen.get(request_id, Counter())
        return {what: seen[what] for what in ("duplicates", "late", "refused")}

    # -- receiving ----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        claimed = request.headers.get(REQUEST_ID)
        refusal = await self._verify(request.headers, body)
        delivery = None if refusal else _parse(body, claimed or "", time.perf_counter())
        if delivery is None:
            reason, status = refusal or ("malformed", 400)
            self.counts[reason] += 1
            if claimed:
                self._seen.setdefault(claimed, Counter())["refused"] += 1
            log.warning(
                "fal webhook refused (%s): request %s, from %s",
                reason,
                _shown(claimed),
                _shown(request.remote),
            )
            return web.Response(status=status, text=f"refused: {reason}\n")
        self._accept(delivery)
        return web.Response(text="ok\n")

    def _accept(self, delivery: Delivery) -> None:
        rid = delivery.request_id
        waiter = self._waiting.get(rid)
        closed = self._closed.get(rid)
        if closed is False:
            outcome = "late"
        elif closed or rid in self._early or (waiter is not None and waiter.done()):
            outcome = "duplicates"
        elif waiter is not None:
            waiter.set_result(delivery)
            outcome = "delivered"
        else:  # before its submit's answer reached us, or of a request never waited on
            if len(self._early) >= EARLY_KEPT:
                del self._early[next(iter(self._early))]
            self._early[rid] = delivery
            outcome = "delivered"
        self.counts[outcome] += 1
        if outcome != "delivered":
            self._seen.setdefault(rid, Counter())[outcome] += 1

    async def _verify(self, headers: Any, body: bytes) -> tuple[str, int] | None:
        """None for a delivery fal signed within the clock window; else (reason, status)."""
        values = [headers.get(name) for name in (REQUEST_ID, USER_ID, TIMESTAMP, SIGNATURE)]
        if not all(values):
            return "unsigned", 401
        request_id, user_id, timestamp, signature_hex = values
        try:
            stamp = int(timestamp)
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            return "malformed", 400
        if abs(time.time() - stamp) > self.tolerance_s:
            return "stale", 401
        message = signed_message(request_id, user_id, timestamp, body)
        for refetch in (False, True):
            keys = await self._public_keys(refetch)
            if keys is None:
                return "no_keys", 503
            if any(_verifies(key, signature, message) for key in keys):
                return None
        return "bad_signature", 401

    async def _public_keys(self, refetch: bool) -> list[Ed25519PublicKey] | None:
        """fal's keys: cached ones while fresh, else fetched (one fetch at a time); with
        `refetch`, fetched again unless that was done within `refetch_gap_s`. None when
        there are none and they cannot be fetched."""
        async with self._fetching:
            now = time.monotonic()
            limit = self.refetch_gap_s if refetch else self.keys_ttl_s
            due = self._keys_at is None or now - self._keys_at > limit
            if due and (self._tried_at is None or now - self._tried_at >= self.refetch_gap_s):
                self._tried_at = now
                try:
                    self._keys = await self._fetch_keys()
                    self._keys_at = now
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning("cannot fetch fal's webhook keys from %s: %s", self.jwks_url, exc)
            return self._keys if self._keys_at is not None else None

    async def _fetch_keys(self) -> list[Ed25519PublicKey]:
        async with httpx.AsyncClient(timeout=JWKS_TIMEOUT_S) as client:
            response = await client.get(self.jwks_url)
            response.raise_for_status()
            keys = _public_keys(response.json())
        if not keys:
            raise ValueError("the JWKS holds no Ed25519 key")
        return keys


def _verifies(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _parse(body: bytes, claimed: str, received: float) -> Delivery | None:
    """A signed body as a `Delivery` (its `request_id`, else the header's); None if it is
    not a JSON object."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    request_id = data.get("request_id")
    if not isinstance(request_id, str):
        request_id = claimed
    error = data.get("error")
    return Delivery(
        request_id=request_id,
        status=str(data.get("status")),
        error=None if error is None else str(error),
        payload=data.get("payload"),
        received=received,
    )
