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
Each submit's `x-fal-*` headers are kept in `submit_headers` for tests to assert.
A submit with `?fal_webhook=URL` has its outcome delivered there, signed, when it
completes, and completes by time alone (`service_time` after its submit, polled or
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
from fal_webhook_sender import JWKS_PATH, WebhookSender
from httpx_routing import routed_to

QUEUE_HOST = "queue.fal.run"
BACKUP_QUEUE_HOST = "queue.falrun.com"  # fal-client's fallback when queue.fal.run won't connect
REST_HOST = "rest.fal.ai"
CDN_HOST = "v3.fal.media"
# Where the storage fallback's signed upload URLs point (a GCS bucket on the real service).
SIGNED_UPLOAD_HOST = "storage.googleapis.com"
SIGNED_UPLOAD_PREFIX = "/fal-emulated-uploads/"
CDN_TOKEN = "emulated-cdn-token"

ENDPOINTS = ("submit", "status", "result", "cancel", "token", "upload")
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
)
# Faults that only make sense on some endpoints.
_FAULT_ENDPOINTS = {
    "completed_error": ("status",),
    "never_complete": ("status",),
    "never_start": ("status",),
    "missing_output": ("result",),
    "unreachable": ("submit", "status", "result", "cancel"),
}
_QUEUE_ENDPOINTS = ("submit", "status", "result", "cancel")
# Faults that change what the endpoint serves rather than replacing its response.
_STATE_FAULTS = ("completed_error", "never_complete", "missing_output", "never_start")
# Platform headers fal reads on submit (docs.fal.ai "Platform Headers", "Reliability").
REQUEST_TIMEOUT = "x-fal-request-timeout"
DISABLE_FALLBACKS = "x-fal-disable-fallbacks"
STORE_IO = "x-fal-store-io"
_ID_NAMESPACE = uuid.UUID("5f1c7a52-8f0e-4f49-9d55-0c2b8f6a1e01")
_LOG_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_APP_NAMESPACES = ("workflows", "comfy")  # as fal_client.client.APP_NAMESPACES


@dataclass
class _Fault:
    kind: str
    on: str
    times: int
    when: Callable[[dict], bool] | None
    params: dict[str, Any]


@dataclass
class _Job:
    id: str
    input: dict
    base_url: str
    submitted_at: float
    served_polls: int = 0
    logs: list[dict] = field(default_factory=list)
    done: bool = False
    stuck: bool = False
    error: str | None = None
    error_type: str | None = None
    error_status: int = 500
    error_headers: dict[str, str] = field(default_factory=dict)
    start_timeout: float | None = None
    held: bool = False  # kept IN_QUEUE (no runner free)
    fallbacks: bool = True


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
    its submit. Status calls that got a fault do not advance it.

    Faults (`inject`) are matched in injection order; each request gets at most one.
    `on="token"` covers the CDN token and the storage fallback's upload initiation,
    `on="upload"` the requests carrying the bytes (CDN upload, signed-URL PUT); for
    those `when` sees `{"file_name", "sha256", "size"}` (`{}` for the token).
    "completed_error" and "never_complete" change the request for good (they count
    once per request), "missing_output" applies only to a completed request, and
    "never_start" keeps a request IN_QUEUE (no runner takes it) until its start timeout;
    "unreachable" (beyond the documented set) raises `httpx.ConnectError` on the
    primary queue host so fal-client's backup-domain transport takes over.
    Options: "drop" with `processed=True` serves the request before dropping the
    response (a submit that was accepted although the client saw an error);
    "server_error" and "ingress" take `status`; "validation" takes `detail`.
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
    ) -> None:
        if queue_polls < 0 or progress_polls < 0:
            raise ValueError("queue_polls and progress_polls must be >= 0")
        if service_time < 0:
            raise ValueError("service_time must be >= 0")
        self.app_id = app_id.strip("/")
        self.reply = reply
        self.queue_polls = queue_polls
        self.progress_polls = progress_polls
        self.service_time = service_time
        self.inference_time = inference_time
        self.fallback_reply = fallback_reply

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
        self.uploads: list[str] = []
        self.polls: dict[str, int] = {}
        self.submit_headers: dict[str, dict[str, str]] = {}  # id -> its x-fal-* headers
        self.stored_payloads: dict[str, dict] = {}  # what fal would keep (not X-Fal-Store-IO: 0)
        self.webhooks = WebhookSender()

        self._jobs: dict[str, _Job] = {}
        self._faults: list[_Fault] = []
        self._files: dict[str, tuple[bytes, str]] = {}  # path on the CDN -> (bytes, type)
        self._signed: dict[str, str] = {}  # signed-upload path -> CDN path it fills
        self._counter = 0
        self._lock = threading.RLock()

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
            if routed.endpoint in ("status", "result", "cancel"):
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
        if host == CDN_HOST:
            if method == "POST" and path == "/files/upload":
                if request.headers.get("authorization") != f"Bearer {CDN_TOKEN}":
                    return _json(401, {"detail": "Invalid or missing CDN token"})
                return _Plan(request, "upload", body=self._upload_info(request))
            if method == "GET" and path in self._files:
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
        }
        with self._lock:
            if plan.endpoint in handlers:
                return handlers[plan.endpoint](plan)
            data, content_type = self._files[plan.request.url.path]
            return httpx.Response(200, content=data, headers={"content-type": content_type})

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
        job = _Job(request_id, arguments, base, time.monotonic(), start_timeout=start_timeout)
        job.fallbacks = headers.get(DISABLE_FALLBACKS, "").lower() not in ("1", "true", "yes")
        self._jobs[request_id] = job
        self.submitted[request_id] = arguments
        self.submit_headers[request_id] = {
            k.lower(): v for k, v in headers.items() if k.lower().startswith("x-fal-")
        }
        if headers.get(STORE_IO) != "0":
            self.stored_payloads[request_id] = arguments
        if webhook := plan.request.url.params.get("fal_webhook"):
            outcome = functools.partial(self._webhook_outcome, job)
            self.webhooks.schedule(request_id, webhook, self.service_time, arguments, outcome)
        return _json(
            200,
            {
                "status": "IN_QUEUE",
                "request_id": request_id,
                "response_url": base,
                "status_url": base + "/status",
                "cancel_url": base + "/cancel",
                "queue_position": 0,
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
            job.done = True
            job.error = str(fault.params.get("message", "CUDA out of memory"))
            job.error_type = str(fault.params.get("error_type", "runner_disconnected"))
            job.error_status = 500
            job.logs.append(self._log(job, f"Error: {job.error}", level="ERROR"))
        elif fault is not None and fault.kind == "never_complete":
            job.stuck = True
        elif fault is not None and fault.kind == "never_start":
            job.held = True

        job.served_polls += 1
        urls = {
            "request_id": job.id,
            "response_url": job.base_url,
            "status_url": job.base_url + "/status",
            "cancel_url": job.base_url + "/cancel",
        }
        state = self._advance(job)
        if state == "IN_QUEUE":
            position = max(self.queue_polls - job.served_polls, 0)
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
        if job.held:
            return "IN_QUEUE"
        if not job.stuck:
            if self.service_time > 0:
                finished = time.monotonic() - job.submitted_at >= self.service_time
            else:
                if job.served_polls <= self.queue_polls:
                    return "IN_QUEUE"
                finished = job.served_polls > self.queue_polls + self.progress_polls
            if finished:
                self._finish(job)
                return "COMPLETED"
        step = sum(1 for log in job.logs if log["message"].startswith("Generating"))
        if not job.logs:
            job.logs.append(self._log(job, "Decoding video frames"))
        job.logs.append(self._log(job, f"Generating answer (step {step + 1})"))
        return "IN_PROGRESS"

    def _finish(self, job: _Job) -> None:
        """The request's service time is over: it is answered (or fails, when only a
        fallback could answer and fallbacks are off)."""
        if job.fallbacks is False and self.fallback_reply is not None:
            self._fail(job, "No runner available", "runner_scheduling_failure", 503)
            return
        job.done = True
        job.logs.append(self._log(job, f"Inference finished in {self.inference_time:.2f}s"))

    def _webhook_outcome(self, job: _Job) -> tuple[int, Any]:
        """Complete `job` now, if nothing did before, and say what its result endpoint
        answers: what a webhook delivers (HTTP status, body)."""
        with self._lock:
            if not (job.done or self._timed_out(job)):
                self._finish(job)
            response = self._result(_Plan(httpx.Request("GET", job.base_url), "result", job=job))
        return response.status_code, json.loads(response.content)

    def _timed_out(self, job: _Job) -> bool:
        """Whether the request's start timeout passed while it waited for a runner (then it
        completes with fal's 504); a request a runner took is never timed out."""
        if job.done or job.start_timeout is None:
            return False
        queued = job.held or (self.service_time == 0 and job.served_polls <= self.queue_polls)
        if not queued or time.monotonic() - job.submitted_at < job.start_timeout:
            return False
        self._fail(job, "Request timed out before it started", "request_timeout", 504)
        job.error_headers = {"x-fal-request-timeout-type": "user"}
        return True

    def _fail(self, job: _Job, message: str, error_type: str, status: int) -> None:
        job.done = True
        job.error, job.error_type, job.error_status = message, error_type, status
        job.logs.append(self._log(job, f"Error: {message}", level="ERROR"))

    def _is_done(self, job: _Job) -> bool:
        if job.done or self._timed_out(job):
            return True
        if job.held:
            return False
        if job.stuck or self.service_time == 0:
            return False
        return time.monotonic() - job.submitted_at >= self.service_time

    def _result(self, plan: _Plan) -> httpx.Response:
        job = plan.job
        assert job is not None
        if not self._is_done(job):
            return _json(400, {"detail": "Request is still in progress"}, job.id)
        if job.error is not None:
            body = {"detail": job.error}
            headers = dict(job.error_headers)
            if job.error_type is not None:
                body["error_type"] = job.error_type
                headers["x-fal-error-type"] = job.error_type
            return _json(job.error_status, body, job.id, headers)
        if plan.fault is not None and plan.fault.kind == "missing_output":
            return _json(200, {"answer": self._reply(job)}, job.id)
        return _json(200, {"output": self._reply(job)}, job.id)

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
        job.done = True
        job.error = "Request was cancelled"
        job.error_type = None
        job.error_status = 400
        return _json(202, {"status": "CANCELLATION_REQUESTED"}, job.id)

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
        name = _safe_name(body.get("file_name"))
        key = self._new_id("upload").replace("-", "")[:16]
        signed_path = f"{SIGNED_UPLOAD_PREFIX}{key}/{name}"
        file_path = f"/files/{key}/{name}"
        self._signed[signed_path] = file_path
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
            self._files[self._signed[request.url.path]] = (data, content_type)
            return httpx.Response(200)
        file_path = f"/files/{digest[:16]}/{plan.body['file_name']}"
        self._files[file_path] = (data, content_type)
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
            "file_name": _safe_name(name),
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


def _safe_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        return "upload.bin"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.strip().rsplit("/", 1)[-1])


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
