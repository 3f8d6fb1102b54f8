"""An in-process emulator of fal's queue protocol and storage upload, for tests.

It emulates the protocol AS fal-client 1.0.x IMPLEMENTS IT: the URLs the client
builds (submit to `queue.fal.run/{app_id}`, poll `.../requests/{id}/status` on the
owner/alias path with the app's sub-path dropped, `logs=true|false` sent as a query
parameter), the status payloads `_parse_status` reads, the error bodies
`_raise_for_status` turns into `FalClientHTTPError` (`detail`, `error_type`), the
`x-fal-request-id` header the client uses to tell the app's 5xx from ingress errors,
and the CDN token + `v3.fal.media` upload (with the `rest.fal.ai` storage fallback).
Beyond the client, it follows fal's documentation (docs.fal.ai "Queue", "Platform
Headers", "Reliability", "Request Errors", read 2026-12): status answers 202 while a
request is IN_QUEUE or IN_PROGRESS; a submit's `X-Fal-Request-Timeout` (over 0.1 s, else
400 `bad_request`) completes a request still waiting for a runner when it passes, its
result a 504 with `X-Fal-Request-Timeout-Type: user` and `error_type` `request_timeout`;
`X-Fal-Store-IO: 0` keeps the payload out of `stored_payloads`; with `fallback_reply`
the endpoint is down and fal's model fallback answers that text, unless the submit sent
`x-fal-disable-fallbacks`, when the request fails (`runner_scheduling_failure`, 503).
With `account_concurrency` it runs at most that many of the account's requests at once
and queues the rest, never refusing one ("Concurrency Limits": only IN_PROGRESS counts,
queued requests are dispatched as places free; "Understanding Requests": `queue_position`
is the number of requests ahead); a runner failure re-queues a running request, unless
it was submitted with `x-fal-no-retry` ("Retries and Error Handling", "Reliability": 503,
504 and connection errors are retried through the queue; `runner_disconnected` is a 503
in "Request Errors"). That a re-queued request reads IN_QUEUE again while it waits is
our reading of those pages (IN_QUEUE: waiting for a runner), not a documented example.
Each submit's `x-fal-*` headers are kept in `submit_headers` for tests to assert.
Files live in a `FalStorage` (`tests/fal_storage.py`, which says what it was checked
against): kept for the lifetime each upload asks (`X-Fal-Object-Lifecycle`), uploaded
whole or, over fal-client's 100 MB threshold, in parts; the model downloads a request's
`video_url` when it has run, and one it cannot read (a deleted or expired upload, a
private address, bad base64) completes the request with fal's 422 `file_download_error`.

Billing, results and cancels follow docs.fal.ai "Pricing", "Platform APIs: Pricing",
"Get request result", "Cancel a request" and "Handle Request Cancellations" (read
2026-12). fal bills a model per its own output unit, or per second of GPU where a model
has no output price, never queue time or a 5xx: a result the app produced carries the
units billed in `x-fal-billable-units` (a decimal number, set by the app). The video
endpoint's page names no output price, so the emulator bills the per-second fallback:
the request's inference seconds (`billable_units` to change), unit `billing_unit`
("second") at `unit_price` USD. `billed` is what fal billed, by request id: every
request the app ran to an output, whether or not anyone fetched it (in time mode a
request runs unpolled, as at fal; poll-driven ones advance only when polled); a 422
that fal may bill is not emulated. The pricing API answers `GET
api.fal.ai/v1/models/pricing?endpoint_id=...` (a key required, else 401) with `{"prices":
[{endpoint_id, unit_price, unit, currency}], "next_cursor", "has_more"}`, listing only
the emulated app. A result is kept `result_retention` seconds (fal: 1 h) after the
request completes, `large_result_retention` (fal: 6 min) when its body is 10 KB or
larger, and for the storage period (here: for good) when its payload is stored (no
`X-Fal-Store-IO: 0`); after that it answers 404 like an unknown request (fal's
documents do not say how an expired result answers). A cancel answers with the `status`
values the reference lists: a queued request is removed (200 `OK`; it never runs or
bills); a running one only has its app signalled (202 `CANCELLATION_REQUESTED`), and the
app stops (`app_honours_cancel`, the default) or runs on to its output and bills; a
completed one 400 `ALREADY_COMPLETED`; an unknown id 404 `NOT_FOUND`. The reference
gives the removed case as the default (200) response but, as read here, not the HTTP
statuses of the others: 202 and 400 are what this emulator answered before, 404 what
it answers for any unknown request.

`forget(request_id)` drops a request as fal does once it stops keeping its result (1 h,
6 min when 10 KB or larger: "Get request result"); what fal answers then is not
documented, so its status, result and cancel answer as for an id fal never gave (404).

A submit with `?fal_webhook=URL` has its outcome delivered there, signed, when it
completes, and completes by time alone (`service_time` after it starts, polled or
not): `webhooks` (`tests/fal_webhook_sender.py`, which says what it follows) signs and
delivers, with its faults, and `rest.fal.ai` serves its keys at fal's JWKS URL.
It stands in for the hosted service, which tests cannot reach; it is not a
specification of that service, and where the client does not look (ids, log text,
timestamps) its answers are plausible stand-ins.

It is reached through httpx's transport layer: `installed()` makes every httpx client
created inside the block use an `httpx.MockTransport` whose handler is this emulator,
so fal-client talks to it unmodified, and vcrpy (which patches
`MockTransport.handle_async_request`) can record the traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fal_client.auth import FAL_QUEUE_RUN_HOST
from fal_storage import DOWNLOAD_ERROR, FalStorage, download_failure, safe_name
from fal_webhook_sender import JWKS_PATH, WebhookSender
from httpx_routing import routed_to

QUEUE_HOST = "queue.fal.run"
BACKUP_QUEUE_HOST = "queue.falrun.com"  # fal-client's fallback when queue.fal.run won't connect
REST_HOST = "rest.fal.ai"
API_HOST = "api.fal.ai"  # fal's Platform APIs (pricing)
PRICING_PATH = "/v1/models/pricing"
BILLABLE_UNITS = "x-fal-billable-units"
LARGE_RESULT_BYTES = 10 * 1024  # results this large are kept for the shorter retention
CDN_HOST = "v3.fal.media"
# Where the storage fallback's signed upload URLs point (a GCS bucket on the real service).
SIGNED_UPLOAD_HOST = "storage.googleapis.com"
SIGNED_UPLOAD_PREFIX = "/fal-emulated-uploads/"
CDN_TOKEN = "emulated-cdn-token"

ENDPOINTS = ("submit", "status", "result", "cancel", "token", "upload", "pricing")
FAULTS = (
    "rate_limit",
    "server_error",
    "ingress",
    "validation",
    "completed_error",
    "never_complete",
    "slow",
    "non_json",
    "malformed_json",
    "missing_output",
    "drop",
    "unreachable",
    "never_start",
    "requeue",
)
# Faults that only make sense on some endpoints.
_FAULT_ENDPOINTS = {
    "completed_error": ("status",),
    "never_complete": ("status",),
    "never_start": ("status",),
    "requeue": ("status",),
    "missing_output": ("result",),
    "unreachable": ("submit", "status", "result", "cancel"),
}
_QUEUE_ENDPOINTS = ("submit", "status", "result", "cancel")
# Faults that change what the endpoint serves rather than replacing its response.
_STATE_FAULTS = ("completed_error", "never_complete", "missing_output", "never_start", "requeue")
# Platform headers fal reads on submit (docs.fal.ai "Platform Headers", "Reliability").
REQUEST_TIMEOUT = "x-fal-request-timeout"
DISABLE_FALLBACKS = "x-fal-disable-fallbacks"
STORE_IO = "x-fal-store-io"
NO_RETRY = "x-fal-no-retry"  # no re-queue after a runner failure (docs.fal.ai "Reliability")
_ID_NAMESPACE = uuid.UUID("5f1c7a52-8f0e-4f49-9d55-0c2b8f6a1e01")
_LOG_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_APP_NAMESPACES = ("workflows", "comfy")  # as fal_client.client.APP_NAMESPACES
SHARED_STORAGE = FalStorage()
# How often a request waiting for one of the account's places is looked at again, when no
# poll comes to dispatch it (webhook mode).
WEBHOOK_RECHECK_S = 0.01


@dataclass
class _Fault:
    kind: str
    on: str
    times: int
    when: Callable[[dict], bool] | None
    params: dict[str, Any]


@dataclass(eq=False)  # one per request: found in the queue by identity
class _Job:
    id: str
    input: dict
    base_url: str
    submitted_at: float
    served_polls: int = 0  # status calls served since it last entered the queue
    logs: list[dict] = field(default_factory=list)
    done: bool = False
    stuck: bool = False
    error: str | None = None
    error_type: str | None = None
    error_status: int = 500
    error_headers: dict[str, str] = field(default_factory=dict)
    error_body: dict[str, Any] | None = None  # the result's body, where not fal's usual one
    start_timeout: float | None = None
    held: bool = False  # kept IN_QUEUE (no runner free)
    fallbacks: bool = True
    queued_at: float = 0.0  # when it last entered the queue: its submit, or a re-queue
    started_at: float | None = None  # when a runner last took it; None while it waits
    running_polls: int = 0  # status calls served since then (poll-count mode)
    ended_at: float | None = None  # when it completed, freeing its runner
    retry: bool = True  # re-queued after a runner failure (no x-fal-no-retry)
    webhook: str | None = None  # where its outcome is delivered (`fal_webhook`)


@dataclass
class _Plan:
    """What one request will get: an endpoint to serve, maybe with a fault."""

    request: httpx.Request
    endpoint: str  # one of ENDPOINTS, or "download"
    job: _Job | None = None
    body: Any = None
    fault: _Fault | None = None


class FalEmulator:
    """Emulates fal's queue protocol and storage upload as fal-client 1.0.x implements it.

    It stands in for the hosted service, which tests cannot reach. Use it through
    `installed()` (or hand `transport` / `sync_transport` to an httpx client):

        emulator = FalEmulator(reply="The answer is B.")
        with emulator.installed():
            handle = await fal_client.AsyncClient(key="k").submit(app, {...})

    Progress: with `service_time == 0` a request answers `queue_polls` status calls
    IN_QUEUE (positions counting down to 0), then `progress_polls` IN_PROGRESS, then
    COMPLETED; with `service_time > 0` it is IN_PROGRESS until that many seconds after
    it started (at its submit, unless it waited). Status calls that got a fault do not
    advance it.

    With `account_concurrency=N`, at most N requests run at once, as fal runs an
    account's: the rest wait IN_QUEUE, never refused, and start oldest first as runs
    end, their `queue_position` the number waiting ahead of them. A request waits
    only for that (`queue_polls` is not used), and runs `service_time` seconds from
    its start; in poll-count mode (`service_time == 0`) it runs for `progress_polls`
    of its own status calls and frees its place on the call that sees it COMPLETED.

    Faults (`inject`) are matched in injection order; each request gets at most one.
    `on="token"` covers the CDN token and the storage fallback's upload initiation,
    `on="upload"` the requests carrying the bytes (CDN upload, signed-URL PUT); for
    those `when` sees `{"file_name", "sha256", "size"}` (`{}` for the token).
    "completed_error" and "never_complete" change the request for good (they count
    once per request), "missing_output" applies only to a completed request, and
    "never_start" keeps a request IN_QUEUE (no runner takes it) until its start timeout;
    "requeue" fails a running request's runner once (a 503, 504 or lost connection):
    fal queues it again (IN_QUEUE, last in line) and runs it anew, or, when it was
    submitted with `x-fal-no-retry`, it completes with `runner_disconnected` (503);
    "unreachable" (beyond the documented set) raises `httpx.ConnectError` on the
    primary queue host so fal-client's backup-domain transport takes over.
    Options: "drop" with `processed=True` serves the request before dropping the
    response (a submit that was accepted although the client saw an error);
    "server_error" and "ingress" take `status`; "validation" takes `detail`.
    `on="pricing"` covers fal's pricing API.

    Billing, result retention and cancels: see the module's docstring; `billed` holds
    the units billed by request id.
    """

    def __init__(
        self,
        *,
        app_id: str = "fal-ai/mini-cpm/video",
        reply: str | Callable[[dict], str] = "A",
        queue_polls: int = 1,
        progress_polls: int = 1,
        service_time: float = 0.0,
        inference_time: float = 0.42,
        fallback_reply: str | None = None,
        storage: FalStorage | None = None,
        webhooks: WebhookSender | None = None,
        billable_units: float | None = None,
        billing_unit: str = "second",
        unit_price: float = 0.0005,
        result_retention: float = 3600.0,
        large_result_retention: float = 360.0,
        app_honours_cancel: bool = True,
        account_concurrency: int | None = None,
    ) -> None:
        if queue_polls < 0 or progress_polls < 0:
            raise ValueError("queue_polls and progress_polls must be >= 0")
        if service_time < 0:
            raise ValueError("service_time must be >= 0")
        if min(result_retention, large_result_retention) < 0:
            raise ValueError("result retentions must be >= 0")
        if account_concurrency is not None and account_concurrency < 1:
            raise ValueError("account_concurrency must be >= 1")
        self.app_id = app_id.strip("/")
        self.reply = reply
        self.queue_polls = queue_polls
        self.progress_polls = progress_polls
        self.service_time = service_time
        self.inference_time = inference_time
        self.fallback_reply = fallback_reply
        self.billable_units = inference_time if billable_units is None else billable_units
        self.billing_unit = billing_unit
        self.unit_price = unit_price
        self.result_retention = result_retention
        self.large_result_retention = large_result_retention
        self.app_honours_cancel = app_honours_cancel
        self.account_concurrency = account_concurrency

        parts = self.app_id.split("/")
        if len(parts) < 2:
            raise ValueError(f"app_id must be owner/alias[/path], got {app_id!r}")
        keep = 3 if parts[0] in _APP_NAMESPACES else 2
        # fal-client polls on owner/alias (plus namespace): the app's sub-path is dropped.
        self._app_base = "/".join(parts[:keep])
        self._queue_hosts = {QUEUE_HOST, BACKUP_QUEUE_HOST, FAL_QUEUE_RUN_HOST}
        self._public_queue_host = FAL_QUEUE_RUN_HOST

        self.transport = httpx.MockTransport(self._handle_async)
        self.sync_transport = httpx.MockTransport(self._handle_sync)

        self.requests: list[tuple[str, str]] = []
        self.submitted: dict[str, dict] = {}
        self.cancelled: list[str] = []
        self.requeued: list[str] = []  # a request's id at each of its re-queues
        self.uploads: list[str] = []
        self.polls: dict[str, int] = {}
        self.submit_headers: dict[str, dict[str, str]] = {}  # id -> its x-fal-* headers
        self.stored_payloads: dict[str, dict] = {}  # what fal would keep (not X-Fal-Store-IO: 0)
        self.webhooks = webhooks or WebhookSender()

        self._jobs: dict[str, _Job] = {}
        self._faults: list[_Fault] = []
        # fal's CDN outlives a run, as the upload cache on disk does: emulators share one
        # storage unless given their own (a test that moves its clock to expire files).
        self.storage = storage or SHARED_STORAGE
        self._signed: dict[str, tuple[str, httpx.Headers]] = {}  # signed path -> CDN path, headers
        self._counter = 0
        self._lock = threading.RLock()
        self._waiting: list[_Job] = []  # IN_QUEUE, oldest first
        self._running: list[_Job] = []  # holding one of the account's places
        self._freed_at = float("-inf")  # when the latest place freed

    # -- public API ---------------------------------------------------------------

    def installed(self) -> contextlib.AbstractContextManager[FalEmulator]:
        """Route every httpx client created inside the block (sync and async, default
        transports) to this emulator."""
        return self._installed()

    @contextlib.contextmanager
    def _installed(self) -> Iterator[FalEmulator]:
        with routed_to(self.transport, self.sync_transport):
            yield self

    def inject(
        self,
        fault: str,
        *,
        on: str = "submit",
        times: int = 1,
        when: Callable[[dict], bool] | None = None,
        **params: Any,
    ) -> None:
        """Make the next `times` requests to `on` (matching `when`) get `fault`."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        if on not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {on!r}; known: {', '.join(ENDPOINTS)}")
        allowed = _FAULT_ENDPOINTS.get(fault, ENDPOINTS)
        if on not in allowed:
            raise ValueError(f"fault {fault!r} applies to {', '.join(allowed)}, not {on!r}")
        if times < 1:
            raise ValueError("times must be >= 1")
        if fault == "slow" and "delay" not in params:
            raise ValueError("the 'slow' fault needs delay=<seconds>")
        with self._lock:
            self._faults.append(_Fault(fault, on, times, when, params))

    @property
    def billed(self) -> dict[str, float]:
        """The units fal billed, by request id: each request its app ran to an output,
        fetched or not; none for a request that failed, was removed from the queue or
        whose app stopped on a cancel."""
        with self._lock:
            return {job.id: self.billable_units for job in self._jobs.values() if self._ran(job)}

    def forget(self, request_id: str) -> None:
        """Drop a request, as fal does once its result is no longer kept (see the module)."""
        with self._lock:
            del self._jobs[request_id]

    # -- transport handlers -------------------------------------------------------

    async def _handle_async(self, request: httpx.Request) -> httpx.Response:
        plan = self._receive(request)
        if isinstance(plan, httpx.Response):
            return plan
        if plan.fault is not None and plan.fault.kind == "slow":
            await asyncio.sleep(float(plan.fault.params["delay"]))
            plan.fault = None
        return self._serve(plan)

    def _handle_sync(self, request: httpx.Request) -> httpx.Response:
        plan = self._receive(request)
        if isinstance(plan, httpx.Response):
            return plan
        if plan.fault is not None and plan.fault.kind == "slow":
            time.sleep(float(plan.fault.params["delay"]))
            plan.fault = None
        return self._serve(plan)

    # -- routing, auth, fault matching --------------------------------------------

    def _receive(self, request: httpx.Request) -> _Plan | httpx.Response:
        with self._lock:
            self.requests.append((request.method, str(request.url)))
            routed = self._route(request)
            if isinstance(routed, httpx.Response):
                return routed
            self._dispatch(time.monotonic())
            if routed.endpoint in ("status", "result", "cancel"):
                if routed.job is None and routed.endpoint == "cancel":
                    return _json(404, {"status": "NOT_FOUND"})
                if routed.job is None:
                    return _json(404, {"detail": "Request not found"})
                if routed.endpoint == "status":
                    self.polls[routed.job.id] = self.polls.get(routed.job.id, 0) + 1
            routed.fault = self._match_fault(routed)
            return routed

    def _route(self, request: httpx.Request) -> _Plan | httpx.Response:
        host, path, method = request.url.host, request.url.path, request.method
        if host in self._queue_hosts:
            if denied := _check_auth(request):
                return denied
            if path == f"/{self.app_id}":
                if method != "POST":
                    return _json(405, {"detail": "Method Not Allowed"})
                return _Plan(request, "submit", body=_json_body(request))
            match = re.fullmatch(r"/(.+)/requests/([^/]+)(/status|/cancel)?", path)
            if match is None or match[1] != self._app_base:
                return _json(404, {"detail": f"Path {path} not found"})
            endpoint, expected = {
                "/status": ("status", "GET"),
                "/cancel": ("cancel", "PUT"),
                None: ("result", "GET"),
            }[match[3]]
            if method != expected:
                return _json(405, {"detail": "Method Not Allowed"})
            return _Plan(request, endpoint, job=self._jobs.get(match[2]))
        if host == REST_HOST:
            if method == "GET" and path == JWKS_PATH:  # public: no key needed
                return self.webhooks.jwks_response()
            if denied := _check_auth(request):
                return denied
            storage_type = request.url.params.get("storage_type")
            if method == "POST" and path == "/storage/auth/token":
                if storage_type != "fal-cdn-v3":
                    return _json(400, {"detail": f"Unsupported storage type {storage_type!r}"})
                return _Plan(request, "token")
            if method == "POST" and path == "/storage/upload/initiate":
                if storage_type != "gcs":
                    return _json(400, {"detail": f"Unsupported storage type {storage_type!r}"})
                return _Plan(request, "token", body=_json_body(request))
            return _json(404, {"detail": f"Path {path} not found"})
        if host == API_HOST:
            if denied := _check_auth(request):
                return denied
            if path != PRICING_PATH:
                return _json(404, {"detail": f"Path {path} not found"})
            if method != "GET":
                return _json(405, {"detail": "Method Not Allowed"})
            return _Plan(request, "pricing")
        if host == CDN_HOST:
            if method == "POST" and path == "/files/upload":
                if request.headers.get("authorization") != f"Bearer {CDN_TOKEN}":
                    return _json(401, {"detail": "Invalid or missing CDN token"})
                return _Plan(request, "upload", body=self._upload_info(request))
            if path.startswith("/files/upload/multipart") or "/multipart/" in path:
                if request.headers.get("authorization") != f"Bearer {CDN_TOKEN}":
                    return _json(401, {"detail": "Invalid or missing CDN token"})
                return self.storage.multipart(request)
            if method == "GET" and self.storage.get(path) is not None:
                return _Plan(request, "download")
            return _json(404, {"detail": "File not found"})
        if host == SIGNED_UPLOAD_HOST and path.startswith(SIGNED_UPLOAD_PREFIX):
            if method == "PUT" and path in self._signed:
                return _Plan(request, "upload", body=self._upload_info(request))
            return _json(403, {"detail": "Invalid signature"})
        raise httpx.ConnectError(
            f"FalEmulator: no route to {host} (tests cannot reach the network)", request=request
        )

    def _match_fault(self, plan: _Plan) -> _Fault | None:
        job = plan.job
        if plan.endpoint == "submit":
            subject = plan.body if isinstance(plan.body, dict) else {}
        elif job is not None:
            subject = job.input
        elif plan.endpoint == "upload":
            subject = plan.body
        else:
            subject = {}
        for fault in self._faults:
            if fault.on != plan.endpoint or fault.times <= 0:
                continue
            if fault.kind in ("completed_error", "never_complete", "never_start") and (
                job is None or self._is_done(job) or job.stuck
            ):
                continue
            if fault.kind == "requeue" and (
                job is None or job.started_at is None or job.held or self._is_done(job)
            ):
                continue
            if fault.kind == "missing_output" and (
                job is None or not self._is_done(job) or job.error
            ):
                continue
            if fault.kind == "unreachable" and plan.request.url.host == BACKUP_QUEUE_HOST:
                continue
            if fault.when is not None and not fault.when(subject):
                continue
            fault.times -= 1
            return fault
        return None

    # -- serving ------------------------------------------------------------------

    def _serve(self, plan: _Plan) -> httpx.Response:
        fault = plan.fault
        if fault is not None and fault.kind not in _STATE_FAULTS:
            if fault.kind == "drop":
                if fault.params.get("processed"):
                    plan.fault = None
                    self._serve(plan)
                raise httpx.ReadError("connection reset by peer", request=plan.request)
            if fault.kind == "unreachable":
                raise httpx.ConnectError("connection refused", request=plan.request)
            request_id = None
            if plan.endpoint in _QUEUE_ENDPOINTS:
                with self._lock:
                    request_id = plan.job.id if plan.job else self._new_id("error")
            subject = plan.body if plan.endpoint == "submit" else None
            return _fault_response(fault, request_id, subject)

        handlers = {
            "submit": self._submit,
            "status": self._status,
            "result": self._result,
            "cancel": self._cancel,
            "token": self._token,
            "upload": self._upload,
            "pricing": self._pricing,
        }
        with self._lock:
            if plan.endpoint in handlers:
                return handlers[plan.endpoint](plan)
            stored = self.storage.files[plan.request.url.path]
            return httpx.Response(
                200, content=stored.data, headers={"content-type": stored.content_type}
            )

    def _submit(self, plan: _Plan) -> httpx.Response:
        arguments = plan.body
        if problems := _validate(arguments):
            return _json(422, {"detail": problems}, self._new_id("error"))
        headers = plan.request.headers
        start_timeout = None
        if REQUEST_TIMEOUT in headers:
            try:
                start_timeout = float(headers[REQUEST_TIMEOUT])
            except ValueError:
                start_timeout = -1.0
            if not start_timeout > 0.1:  # fal's documented minimum
                body = {"detail": "Invalid request timeout header", "error_type": "bad_request"}
                return _json(400, body, self._new_id("error"))
        request_id = self._new_id("request")
        base = f"https://{self._public_queue_host}/{self._app_base}/requests/{request_id}"
        now = time.monotonic()
        job = _Job(request_id, arguments, base, now, start_timeout=start_timeout, queued_at=now)
        job.fallbacks = headers.get(DISABLE_FALLBACKS, "").lower() not in ("1", "true", "yes")
        job.retry = headers.get(NO_RETRY, "").lower() not in ("1", "true", "yes")
        job.webhook = plan.request.url.params.get("fal_webhook")
        self._jobs[request_id] = job
        self._waiting.append(job)
        self._dispatch(now)
        self.submitted[request_id] = arguments
        self.submit_headers[request_id] = {
            k.lower(): v for k, v in headers.items() if k.lower().startswith("x-fal-")
        }
        if headers.get(STORE_IO) != "0":
            self.stored_payloads[request_id] = arguments
        if job.webhook is not None:
            outcome = functools.partial(self._webhook_outcome, job)
            self.webhooks.schedule(request_id, job.webhook, self.service_time, arguments, outcome)
        return _json(
            200,
            {
                "status": "IN_QUEUE",
                "request_id": request_id,
                "response_url": base,
                "status_url": base + "/status",
                "cancel_url": base + "/cancel",
                "queue_position": self._position(job) if self.account_concurrency else 0,
            },
            request_id,
        )

    def _status(self, plan: _Plan) -> httpx.Response:
        job = plan.job
        assert job is not None
        raw_logs = plan.request.url.params.get("logs", "false").lower()
        if raw_logs not in ("true", "false", "1", "0"):
            detail = [
                {
                    "loc": ["query", "logs"],
                    "msg": "value could not be parsed to a boolean",
                    "type": "type_error.bool",
                }
            ]
            return _json(422, {"detail": detail}, job.id)
        with_logs = raw_logs in ("true", "1")
        fault = plan.fault
        if fault is not None and fault.kind == "completed_error":
            message = str(fault.params.get("message", "CUDA out of memory"))
            error_type = str(fault.params.get("error_type", "runner_disconnected"))
            self._fail(job, message, error_type, 500)
        elif fault is not None and fault.kind == "never_complete":
            job.stuck = True
        elif fault is not None and fault.kind == "never_start":
            job.held = True
            if job.started_at is not None:
                self._queue_again(job)
        elif fault is not None and fault.kind == "requeue":
            self._requeue(job)

        job.served_polls += 1
        urls = {
            "request_id": job.id,
            "response_url": job.base_url,
            "status_url": job.base_url + "/status",
            "cancel_url": job.base_url + "/cancel",
        }
        state = self._advance(job)
        if state == "IN_QUEUE":
            position = self._position(job)
            return _json(202, {"status": "IN_QUEUE", "queue_position": position, **urls}, job.id)
        logs = list(job.logs) if with_logs else None
        if state == "IN_PROGRESS":
            return _json(202, {"status": "IN_PROGRESS", "logs": logs, **urls}, job.id)
        payload: dict[str, Any] = {"status": "COMPLETED", "logs": logs, **urls}
        if job.error is None:
            payload["metrics"] = {"inference_time": self.inference_time}
        else:
            payload["metrics"] = {}
            payload["error"] = job.error
            if job.error_type is not None:
                payload["error_type"] = job.error_type
        return _json(200, payload, job.id)

    def _advance(self, job: _Job) -> str:
        """The state one served status call sees, updating the job (logs, done)."""
        if job.done or self._timed_out(job):
            return "COMPLETED"
        if job.held or job.started_at is None:
            return "IN_QUEUE"
        if not job.stuck:
            if self.service_time > 0:
                finished = time.monotonic() - job.started_at >= self.service_time
            else:
                job.running_polls += 1
                finished = job.running_polls > self.progress_polls
            if finished:
                self._finish(job)
                return "COMPLETED"
        step = sum(1 for log in job.logs if log["message"].startswith("Generating"))
        if not job.logs:
            job.logs.append(self._log(job, "Decoding video frames"))
        job.logs.append(self._log(job, f"Generating answer (step {step + 1})"))
        return "IN_PROGRESS"

    def _finish(self, job: _Job) -> None:
        """The request's service time is over: it is answered, or fails (its video could
        not be downloaded; only a fallback could answer and fallbacks are off)."""
        job.ended_at = min(self._end(job), time.monotonic())
        if self._download_failed(job):
            return
        if job.fallbacks is False and self.fallback_reply is not None:
            self._fail(job, "No runner available", "runner_scheduling_failure", 503)
            return
        job.done = True
        job.logs.append(self._log(job, f"Inference finished in {self.inference_time:.2f}s"))

    def _webhook_outcome(self, job: _Job) -> tuple[int, Any] | float:
        """Complete `job` if its time has come and nothing did before, and say what its
        result endpoint answers (HTTP status, body): what a webhook delivers; or, while it
        still waits for one of the account's places or runs, seconds to ask again in."""
        with self._lock:
            now = time.monotonic()
            self._dispatch(now)
            if not (job.done or self._timed_out(job)):
                if job.held or job.started_at is None:
                    return WEBHOOK_RECHECK_S
                if self.service_time > 0 and job.started_at + self.service_time > now:
                    return job.started_at + self.service_time - now
                self._finish(job)
            response = self._result(_Plan(httpx.Request("GET", job.base_url), "result", job=job))
        return response.status_code, json.loads(response.content)

    def _timed_out(self, job: _Job, at: float | None = None) -> bool:
        """Whether the request's start timeout passed while it waited for a runner, by now
        or by `at` (then it completes with fal's 504); one a runner has is never timed out."""
        if job.done or job.start_timeout is None:
            return False
        waited = (time.monotonic() if at is None else at) - job.submitted_at
        if not self._queued(job) or waited < job.start_timeout:
            return False
        self._fail(job, "Request timed out before it started", "request_timeout", 504)
        job.error_headers = {"x-fal-request-timeout-type": "user"}
        return True

    def _download_failed(self, job: _Job) -> bool:
        """The model downloads the request's `video_url` (as fal apps do with `download_file`);
        when it cannot, the request completes with fal's 422 `file_download_error`."""
        url = job.input.get("video_url", "")
        reason = self.storage.download(url)
        if reason is None:
            return False
        self._fail(job, f"Failed to download the file: {reason}", DOWNLOAD_ERROR, 422)
        job.error_body = download_failure(url, reason)
        return True

    @staticmethod
    def _queued(job: _Job) -> bool:
        """Whether the request still waits for a runner (a cancel removes it)."""
        return job.held or job.started_at is None

    def _completion(self, job: _Job) -> float:
        """When the request completed (its runner freed): in time mode, once its service
        time ran out, though nobody polled it; now when that is not known."""
        end = self._end(job)
        return time.monotonic() if end == math.inf else end

    def _fail(self, job: _Job, message: str, error_type: str, status: int) -> None:
        job.done = True
        job.error, job.error_type, job.error_status = message, error_type, status
        job.logs.append(self._log(job, f"Error: {message}", level="ERROR"))
        self._leave(job)

    # -- the account's concurrency ------------------------------------------------

    def _dispatch(self, now: float) -> None:
        """Start waiting requests, oldest first, while the account has a free place (any
        number without `account_concurrency`): each at the moment its place freed, or it
        was queued if later, as fal dispatches them; one whose start timeout passed
        first completes with fal's 504 instead."""
        limit = self.account_concurrency
        while job := next((j for j in self._waiting if self._may_start(j)), None):
            if limit is not None and len(self._running) >= limit:
                first = min(self._running, key=self._end)
                if self._end(first) > now:
                    return  # every place is taken still
                self._running.remove(first)
                self._freed_at = max(self._freed_at, self._end(first))
                continue
            start = max(job.queued_at, self._freed_at)
            if self._timed_out(job, at=start):
                continue
            self._waiting.remove(job)
            job.started_at, job.running_polls = start, 0
            if limit is not None:
                self._running.append(job)

    def _may_start(self, job: _Job) -> bool:
        """Whether a runner may take the request: not held back by a fault and, in
        poll-count mode without an account limit, after its `queue_polls` IN_QUEUE answers
        (one delivered by webhook is never polled: at once)."""
        if job.held:
            return False
        if self.account_concurrency is None and self.service_time == 0 and job.webhook is None:
            return job.served_polls >= self.queue_polls
        return True

    def _end(self, job: _Job) -> float:
        """When a running request frees its place: when it completed, else when its
        service time runs out; infinity while that is not known (poll-count mode, stuck)."""
        if job.ended_at is not None:
            return job.ended_at
        if job.started_at is None or job.stuck or self.service_time == 0:
            return math.inf
        return job.started_at + self.service_time

    def _position(self, job: _Job) -> int:
        """`queue_position`: the requests waiting ahead of it with an account limit, else
        counting down its `queue_polls`."""
        if self.account_concurrency is None:
            return max(self.queue_polls - job.served_polls, 0)
        return self._waiting.index(job) if job in self._waiting else 0

    def _queue_again(self, job: _Job) -> None:
        """Take a running request off its runner and back into the queue, last in line."""
        now = time.monotonic()
        if job in self._running:
            self._running.remove(job)
            self._freed_at = max(self._freed_at, now)
        job.started_at, job.queued_at, job.served_polls = None, now, 0
        self._waiting.append(job)

    def _requeue(self, job: _Job) -> None:
        """Its runner failed (a 503, 504, lost connection): fal runs it again from the
        queue, or fails it when it was submitted with `x-fal-no-retry`."""
        if not job.retry:
            self._fail(job, "Runner disconnected", "runner_disconnected", 503)
            return
        self.requeued.append(job.id)
        job.logs.append(self._log(job, "Runner disconnected: request re-queued", "WARNING"))
        self._queue_again(job)

    def _leave(self, job: _Job) -> None:
        """A completed request leaves the queue, or frees its place from now."""
        if job in self._waiting:
            self._waiting.remove(job)
        if job.ended_at is None:
            job.ended_at = time.monotonic()

    def _ran(self, job: _Job) -> bool:
        """Whether the app ran the request to an output (what fal bills)."""
        if not self._is_done(job) or job.error is not None:
            return False
        # Unpolled in time mode, a request with fallbacks off and the endpoint down fails.
        return job.fallbacks or self.fallback_reply is None

    def _is_done(self, job: _Job) -> bool:
        if job.done or self._timed_out(job):
            return True
        if job.held or job.started_at is None:
            return False
        if job.stuck or self.service_time == 0:
            return False
        return time.monotonic() - job.started_at >= self.service_time

    def _result(self, plan: _Plan) -> httpx.Response:
        job = plan.job
        assert job is not None
        if not self._is_done(job):
            return _json(400, {"detail": "Request is still in progress"}, job.id)
        if job.error_body is not None:  # a model's error: typed `detail` objects
            return _json(job.error_status, job.error_body, job.id)
        if job.error is not None:
            body = {"detail": job.error}
            headers = dict(job.error_headers)
            if job.error_type is not None:
                body["error_type"] = job.error_type
                headers["x-fal-error-type"] = job.error_type
            response = _json(job.error_status, body, job.id, headers)
        else:
            key = (
                "answer"
                if plan.fault is not None and plan.fault.kind == "missing_output"
                else "output"
            )
            billed = {BILLABLE_UNITS: str(self.billable_units)}
            response = _json(200, {key: self._reply(job)}, job.id, billed)
        if self._expired(job, len(response.content)):
            return _json(404, {"detail": "Request not found"})
        return response

    def _expired(self, job: _Job, size: int) -> bool:
        """Whether fal no longer keeps the request's result (of `size` bytes)."""
        if job.id in self.stored_payloads:  # kept for the payload storage period
            return False
        retention = (
            self.large_result_retention if size >= LARGE_RESULT_BYTES else self.result_retention
        )
        return time.monotonic() - self._completion(job) >= retention

    def _reply(self, job: _Job) -> str:
        if self.fallback_reply is not None and job.fallbacks:
            return self.fallback_reply  # answered by another endpoint, silently
        return self.reply(job.input) if callable(self.reply) else self.reply

    def _cancel(self, plan: _Plan) -> httpx.Response:
        job = plan.job
        assert job is not None
        if self._is_done(job):
            return _json(400, {"status": "ALREADY_COMPLETED"}, job.id)
        self.cancelled.append(job.id)
        if self._queued(job):  # removed from the queue: it never runs
            self._stop(job)
            return _json(200, {"status": "OK"}, job.id)
        if self.app_honours_cancel:  # else the app runs on to its output, billed
            self._stop(job)
        return _json(202, {"status": "CANCELLATION_REQUESTED"}, job.id)

    def _stop(self, job: _Job) -> None:
        job.done = True
        job.error = "Request was cancelled"
        job.error_type = None
        job.error_status = 400
        self._leave(job)

    def _pricing(self, plan: _Plan) -> httpx.Response:
        asked = [
            endpoint.strip()
            for value in plan.request.url.params.get_list("endpoint_id")
            for endpoint in value.split(",")
            if endpoint.strip()
        ]
        if not asked:
            return _json(400, {"detail": "endpoint_id is required"})
        price = {
            "endpoint_id": self.app_id,
            "unit_price": self.unit_price,
            "unit": self.billing_unit,
            "currency": "USD",
        }
        prices = [price] if self.app_id in asked else []
        return _json(200, {"prices": prices, "next_cursor": None, "has_more": False})

    def _token(self, plan: _Plan) -> httpx.Response:
        if plan.request.url.path == "/storage/auth/token":
            expires = datetime.now(UTC) + timedelta(hours=1)
            return _json(
                200,
                {
                    "token": CDN_TOKEN,
                    "token_type": "Bearer",
                    "base_url": f"https://{CDN_HOST}",
                    "expires_at": expires.isoformat(),
                },
            )
        # The storage fallback: a signed URL to PUT the bytes to, and where they will be.
        body = plan.body if isinstance(plan.body, dict) else {}
        name = safe_name(body.get("file_name"))
        key = self._new_id("upload").replace("-", "")[:16]
        signed_path = f"{SIGNED_UPLOAD_PREFIX}{key}/{name}"
        file_path = f"/files/{key}/{name}"
        self._signed[signed_path] = (file_path, plan.request.headers)
        return _json(
            200,
            {
                "upload_url": f"https://{SIGNED_UPLOAD_HOST}{signed_path}?X-Goog-Signature=emulated",
                "file_url": f"https://{CDN_HOST}{file_path}",
            },
        )

    def _upload(self, plan: _Plan) -> httpx.Response:
        request = plan.request
        data = request.content
        digest = hashlib.sha256(data).hexdigest()
        content_type = request.headers.get("content-type", "application/octet-stream")
        self.uploads.append(digest)
        if request.url.host == SIGNED_UPLOAD_HOST:
            file_path, initiated = self._signed[request.url.path]
            self.storage.put(file_path, data, content_type, initiated)
            return httpx.Response(200)
        file_path = f"/files/{digest[:16]}/{plan.body['file_name']}"
        self.storage.put(file_path, data, content_type, request.headers)
        return _json(200, {"access_url": f"https://{CDN_HOST}{file_path}"})

    # -- helpers ------------------------------------------------------------------

    def _new_id(self, kind: str) -> str:
        """Deterministic per instance, so recordings of the same run are reproducible."""
        self._counter += 1
        return str(uuid.uuid5(_ID_NAMESPACE, f"{self.app_id}:{kind}:{self._counter}"))

    def _upload_info(self, request: httpx.Request) -> dict[str, Any]:
        name = request.headers.get("x-fal-file-name")
        if request.url.host == SIGNED_UPLOAD_HOST:
            name = request.url.path.rsplit("/", 1)[-1]
        return {
            "file_name": safe_name(name),
            "sha256": hashlib.sha256(request.content).hexdigest(),
            "size": len(request.content),
        }

    @staticmethod
    def _log(job: _Job, message: str, level: str = "INFO") -> dict[str, Any]:
        # Fake but deterministic timestamps: 100 ms apart from a fixed epoch.
        stamp = _LOG_EPOCH + timedelta(milliseconds=100 * len(job.logs))
        return {
            "message": message,
            "level": level,
            "source": "user",
            "timestamp": stamp.isoformat(),
        }


def _check_auth(request: httpx.Request) -> httpx.Response | None:
    if re.fullmatch(r"(Key|Bearer) \S+", request.headers.get("authorization", "")):
        return None
    return _json(401, {"detail": "Missing authorization header"})


def _json_body(request: httpx.Request) -> Any:
    try:
        return json.loads(request.content or b"null")
    except ValueError:
        return None


def _validate(arguments: Any) -> list[dict[str, Any]]:
    if not isinstance(arguments, dict):
        return [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]
    problems = []
    for name in ("video_url", "prompt"):
        value = arguments.get(name)
        if value is None:
            problems.append(
                {"loc": ["body", name], "msg": "field required", "type": "value_error.missing"}
            )
        elif not isinstance(value, str):
            problems.append(
                {"loc": ["body", name], "msg": "str type expected", "type": "type_error.str"}
            )
        elif not value.strip():
            problems.append(
                {
                    "loc": ["body", name],
                    "msg": "ensure this value has at least 1 characters",
                    "type": "value_error.any_str.min_length",
                }
            )
    return problems


def _json(
    status: int, body: Any, request_id: str | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    """JSON as Python's `json` writes it by default, as a Python service would: any text
    (a lone surrogate as its escape) and any float (`-Infinity`) can be sent."""
    headers = {**(headers or {}), "content-type": "application/json"}
    if request_id:
        headers["x-fal-request-id"] = request_id
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


def _fault_response(fault: _Fault, request_id: str | None, arguments: Any = None) -> httpx.Response:
    params = fault.params
    kind = fault.kind
    app_headers = {"x-fal-request-id": request_id} if request_id else {}
    if kind == "rate_limit":
        headers = {**app_headers, "retry-after": str(params.get("retry_after", "1"))}
        return httpx.Response(429, json={"detail": "Rate limit exceeded"}, headers=headers)
    if kind == "server_error":
        body = {
            "detail": params.get("message", "Internal server error"),
            "error_type": params.get("error_type", "internal_error"),
        }
        return httpx.Response(int(params.get("status", 500)), json=body, headers=app_headers)
    if kind == "ingress":
        # No x-fal-request-id: that and "nginx" in the body make fal-client retry it.
        return httpx.Response(
            int(params.get("status", 502)),
            text=_NGINX_502,
            headers={"content-type": "text/html", "server": "nginx"},
        )
    if kind == "validation":
        detail = params.get(
            "detail",
            [
                {
                    "loc": ["body", params.get("field", "video_url")],
                    "msg": "field required",
                    "type": "value_error.missing",
                    # pydantic 2 (FastAPI) echoes the input the error is about: for a
                    # missing field, the whole body, a data: URI included.
                    "input": arguments,
                }
            ],
        )
        return httpx.Response(422, json={"detail": detail}, headers=app_headers)
    if kind == "non_json":
        return httpx.Response(
            200, text="<html>oops</html>", headers={**app_headers, "content-type": "text/html"}
        )
    if kind == "malformed_json":
        return httpx.Response(
            200,
            content=b'{"output": ',
            headers={**app_headers, "content-type": "application/json"},
        )
    raise AssertionError(f"unhandled fault {kind}")
