"""The hosted MiniCPM-V 2.6 endpoint on fal, through the official `fal_client.AsyncClient`.

Per sample: make the video reachable (a URL passes through; a local file is
uploaded once per content hash, or sent as a `data:` URI), submit to the queue,
poll the status with logs (the wait between polls grows with the time waited,
so latencies stay accurate to a fixed fraction), and fetch the result.
fal-client retries 408/409/429, ingress 5xx and transport errors itself;
everything else becomes a `BackendError` carrying fal's error type and message.
A request given up before it completes (deadline, Ctrl-C, a status poll that
failed) is cancelled at fal; one COMPLETED with an error has its error body fetched.
The result and a cancel are our own requests (`backends.fal_billing`), which keep
what fal-client drops: the units fal billed, and fal's answer to the cancel; each
record keeps its billed units with the unit price read once from fal's pricing API,
and `estimate_cost` prices a run by them.

In a run directory (`use_run_directory`), each request is journaled before it is
waited on and fal's logs are kept in full (`backends.fal_journal`); a `--resume`
re-attaches a sample to the request an interrupted session left open (still
queued, running, or done with its result kept) instead of submitting it again,
and says so in the record's meta (`reattached`).

Every submit, unless told otherwise, disables fal's model fallbacks (so only this
endpoint answers), asks fal not to store its payloads (`X-Fal-Store-IO: 0`) and
bounds its wait to start by the sample's deadline (`start_timeout`, whose 504 fails
the sample as `start_timeout`); `describe()` puts these in the manifest.

The endpoint exposes no frame count, temperature or token limit and returns no
token counts: only `upload`, `queue` and `inference` are observable (the runner adds `total`).

With `webhook_url`, fal posts each result to a local receiver instead
(`backends/fal_webhooks.py`): a sample answered so makes no status poll, and a request
whose delivery has not come within `webhook_wait` is polled as above. A webhook
cannot be recorded or replayed (fal calls us), so such a run is live only.

Whether a run is live, recorded or replayed comes from the runner
(`use_http_mode`). fal-client and PyAV are imported on first use, so pricing a
finished run or listing the backend does not load them; `bench` replays the
committed recording of the synthetic suite (`recordings/`) when there is no key.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from backends import fal_billing
from backends.fal_account import InFlight, account_facts, requeues
from backends.fal_journal import (
    RESULT_READ,
    Journaled,
    RunFiles,
    at_deadline,
    fingerprint,
    resubmitting,
)
from backends.uploads import ContentHashes, UploadCache, upload_lifetime_s
from harness.errors import UsageError
from harness.files import not_a_file
from harness.media.cache import cache_root
from harness.protocols import Cost, HttpMode, RunFacts, SessionSpan, StandIn, note, time_left
from harness.types import PARTIAL_TIMINGS, Answer, BackendError, Query, Record

if TYPE_CHECKING:
    import fal_client

    from backends.fal_client_pool import PooledAsyncClient
    from backends.fal_webhooks import Delivery

DEFAULT_APP = "fal-ai/mini-cpm/video"
SECRET_VARIABLES = ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET")
# A replayed run needs no key, but fal-client will not build a client without one.
REPLAY_KEY = "replay-without-key"
_REMOTE = ("http://", "https://", "data:")
# Error kinds for HTTP errors whose body names no `error_type`.
_KIND_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    422: "validation_error",
    429: "rate_limited",
}

# Committed recordings `bench` replays without a key, by benchmark (package data).
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPLAY_SETS = {"synthetic": PACKAGE_ROOT / "backends" / "recordings" / "fal-synthetic"}

# Submit headers for an evaluation's integrity and privacy (fal's "Platform Headers" and
# "Reliability" pages): only this endpoint answers, and fal keeps no copy of the payloads.
DISABLE_FALLBACKS = "x-fal-disable-fallbacks"
STORE_IO = "X-Fal-Store-IO"
# fal's answer when a request's start timeout passed before it started: a 504 with this.
REQUEST_TIMEOUT_TYPE = "X-Fal-Request-Timeout-Type"
# fal-client refuses a start timeout of 1 s or less (`add_timeout_header`).
MIN_START_TIMEOUT_S = 1.0
START_TIMEOUT_MARGIN_S = 1.0

# How much longer than the upload cache hands a URL out fal is asked to keep the file
# (`X-Fal-Object-Lifecycle`): a URL given to a sample stays readable while it waits and runs.
UPLOAD_GRACE_S = 3600.0
# A fal model error whose `video_url` the app could not read (docs.fal.ai/errors).
DOWNLOAD_ERROR = "file_download_error"
_FAL_ERROR_DOCS = "https://docs.fal.ai/errors"

# How long giving up a request waits for fal to accept its cancel: a sample past its
# deadline ends at most this much later.
CANCEL_TIMEOUT_S = 10.0

_HTML_TITLE = re.compile(r"<title>(.*?)</title>", re.I | re.S)

_retries: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "fal_retries", default=None
)

LOG_LINES_KEPT = 5
"""fal's log lines a record keeps: the last ones."""

NOT_REPORTED = "not reported by the service (fal samples the video itself)"
"""What a record says of the frames the model saw: the endpoint does not tell."""


@dataclass
class _Life:
    """One request's life at fal as its polls saw it: each change of state (or queue
    position) with seconds since the submit, fal's log lines, how a cancel went."""

    submitted: float  # time.perf_counter() at the submit
    request_id: str | None = None
    states: list[list[Any]] = field(default_factory=list)  # [seconds, state, queue position]
    logs: list[str] = field(default_factory=list)
    cancel: str | None = None
    resent_submits: int = 0  # fal-client's retries of the submit: fal may have run each
    reattached: dict[str, Any] | None = None  # a journaled request's, on `--resume`
    billing: dict[str, Any] | None = None  # what fal billed for the result (`fal_billing`)
    account: dict[str, Any] = field(default_factory=dict)  # `InFlight.at_submit()`
    in_progress: list[list[float]] = field(default_factory=list)  # [first, last] seen, seconds
    webhook: dict[str, Any] | None = None  # how a webhook went, in webhook mode

    def saw(self, status: fal_client.Status) -> None:
        import fal_client

        state = type(status).__name__
        state = {"Queued": "IN_QUEUE", "InProgress": "IN_PROGRESS"}.get(state, state.upper())
        position = status.position if isinstance(status, fal_client.Queued) else None
        seconds = round(time.perf_counter() - self.submitted, 3)
        changed = not self.states or self.states[-1][1:] != [state, position]
        if changed:
            self.states.append([seconds, state, position])
        if state == "IN_PROGRESS":  # each run, from the first poll that saw it to the last
            if changed:
                self.in_progress.append([seconds, seconds])
            else:
                self.in_progress[-1][1] = seconds
        lines = [_log_line(log) for log in getattr(status, "logs", None) or ()]
        if lines[: len(self.logs)] == self.logs:  # fal sends every line so far
            self.logs = lines
        else:  # or only the new ones
            self.logs += lines

    def facts(self) -> dict[str, Any]:
        """What a record keeps: request id, states, last state, the last log lines, cancel."""
        facts: dict[str, Any] = {"request_id": self.request_id, "states": self.states}
        facts["last_state"] = self.states[-1][1] if self.states else "SUBMITTED"
        facts["logs"] = self.logs[-LOG_LINES_KEPT:]
        if self.cancel is not None:
            facts["cancel"] = self.cancel
        if self.resent_submits:
            facts["resent_submits"] = self.resent_submits
        if self.reattached is not None:
            facts["reattached"] = self.reattached
        if self.webhook is not None:
            facts["webhook"] = self.webhook
        return {**facts, **self.concurrency()}

    def concurrency(self) -> dict[str, Any]:
        """What `backends.fal_account` reads: the submit's time and requests in flight,
        the spans polls saw the request IN_PROGRESS, and its re-queues."""
        return {**self.account, "in_progress": self.in_progress, "requeues": requeues(self.states)}

    def failed(self, error: BackendError) -> BackendError:
        """`error`, carrying the request's life as it was."""
        return BackendError(error.kind, error.message, **{**error.details, **self.facts()})


def _log_line(log: Any) -> str:
    if not isinstance(log, dict):
        return str(log)
    return " ".join(str(log[k]) for k in ("timestamp", "level", "message") if log.get(k))


@dataclass
class FalBackend:
    """MiniCPM-V 2.6 hosted on fal (fal-ai/mini-cpm/video) over fal's queue API."""

    name: ClassVar[str] = "fal"
    default_concurrency: ClassVar[int] = 8
    price_unit: ClassVar[str] = (
        "second of fal inference, for runs whose records lack the units fal billed and its "
        "unit price (those are priced without --price)"
    )

    app: str = field(default=DEFAULT_APP, metadata={"help": "fal app id"})
    upload: Literal["storage", "data-uri"] = field(
        default="storage",
        metadata={"help": "how local videos reach fal: its storage (public URL) or a data: URI"},
    )
    data_uri_max_mb: float = field(default=20.0, metadata={"help": "largest video sent as data:"})
    poll_interval: float = field(default=0.1, metadata={"help": "shortest wait between polls"})
    poll_backoff: float = field(
        default=0.1,
        metadata={"help": "wait between polls as a fraction of the time waited so far"},
    )
    poll_max_interval: float = field(default=2.0, metadata={"help": "longest wait between polls"})
    upload_cache: Path | None = field(
        default=None,
        metadata={"help": "sha256 -> URL cache file (default: in the vqa-harness cache dir)"},
    )
    upload_ttl_hours: float = field(
        default=24.0,
        metadata={"help": "reuse an upload this long (fal is asked to keep it an hour longer)"},
    )
    fallbacks: bool = field(
        default=False,
        metadata={
            "help": "let fal answer from another endpoint when this one fails (off: only "
            "MiniCPM-V 2.6 answers; sends x-fal-disable-fallbacks)"
        },
    )
    store_io: bool = field(
        default=False,
        metadata={
            "help": "let fal keep each request's input and output (30 days; off sends "
            "X-Fal-Store-IO: 0)"
        },
    )
    start_timeout: float | None = field(
        default=None,
        metadata={
            "help": "seconds a request may wait at fal before it starts (default: the "
            "time left to the sample's deadline; sent as X-Fal-Request-Timeout)"
        },
    )
    account_concurrency: int | None = field(
        default=None,
        metadata={
            "help": "most requests in flight at fal (your account's concurrency limit: fal "
            "queues the rest, as `queue`); the wait for a place here is `cap_wait`"
        },
    )
    webhook_url: str | None = field(
        default=None,
        metadata={
            "help": "public URL fal posts each result to (a tunnel to webhook_listen): "
            "results come by webhook instead of status polls"
        },
    )
    webhook_listen: str | None = field(
        default=None,
        metadata={
            "help": "HOST:PORT the webhook receiver binds (default: 127.0.0.1 and "
            "webhook_url's port)"
        },
    )
    webhook_wait: float = field(
        default=120.0,
        metadata={
            "help": "seconds to wait for a request's webhook before polling it instead "
            "(and no longer than the sample's deadline allows)"
        },
    )
    _client: Any = field(default=None, init=False, repr=False)  # fal_client.AsyncClient
    _webhooks: Any = field(default=None, init=False, repr=False)  # fal_webhooks.WebhookMode
    _uploads: UploadCache | None = field(default=None, init=False, repr=False)
    _hashes: ContentHashes = field(default_factory=ContentHashes, init=False, repr=False)
    _uploaded: dict[str, str] = field(default_factory=dict, init=False, repr=False)  # url -> sha
    _mode: HttpMode = field(default="live", init=False, repr=False)
    _price: fal_billing.PriceReader | None = field(default=None, init=False, repr=False)
    _files: RunFiles | None = field(default=None, init=False, repr=False)
    _in_flight: InFlight = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for option in (
            *("poll_interval", "poll_max_interval", "data_uri_max_mb", "upload_ttl_hours"),
            "webhook_wait",
        ):
            if getattr(self, option) <= 0:
                raise ValueError(f"{option} must be positive, got {getattr(self, option)}")
        if self.start_timeout is not None and self.start_timeout <= MIN_START_TIMEOUT_S:
            raise ValueError(
                f"start_timeout must be over {MIN_START_TIMEOUT_S:g} s, got {self.start_timeout}"
            )
        if self.poll_backoff < 0:
            raise ValueError(f"poll_backoff must be 0 or more, got {self.poll_backoff}")
        if self.account_concurrency is not None and self.account_concurrency < 1:
            raise ValueError(
                f"account_concurrency must be at least 1, got {self.account_concurrency}"
            )
        self._in_flight = InFlight(self.account_concurrency)
        if self.webhook_url is not None or self.webhook_listen is not None:
            from backends.fal_webhooks import WebhookMode

            self._webhooks = WebhookMode(self.webhook_url, self.webhook_listen, self.webhook_wait)
        _filter_fal_logs()

    @classmethod
    def unavailable_reason(cls, mode: HttpMode = "live") -> str | None:
        """A replay needs no key; anything else needs fal credentials."""
        if mode == "replay" or _has_fal_credentials():
            return None
        return "no fal credentials: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET)"

    @classmethod
    def secret_variables(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The variables fal-client reads its key from."""
        return SECRET_VARIABLES

    def use_http_mode(self, mode: HttpMode) -> None:
        """Live: uploads cached on disk. Record, replay: in memory, so the cassette has them;
        a replay needs no key and does not wait between polls. Webhooks are live only."""
        if self.webhook_url is not None and mode != "live":
            raise UsageError(
                f"backend 'fal': webhook_url cannot be used with --{mode}: fal posts "
                "results to the receiver, which a cassette cannot record or replay"
            )
        self._mode = mode

    def use_run_directory(self, path: Path, resuming: bool) -> None:
        """Keep fal's logs in the run directory and, unless replaying, journal each
        request there, so that a resume re-attaches to it (`backends.fal_journal`)."""
        self._files = RunFiles(path, resuming=resuming, journal=self._mode != "replay")

    @classmethod
    def estimate_cost(
        cls, records: Sequence[Record], sessions: Sequence[SessionSpan], price: float | None
    ) -> Cost:
        """fal's billed units times its unit price, as the records carry them; `price` per
        second of `inference` (else `total`) for answers without (`fal_billing`)."""
        return fal_billing.estimate_cost(records, price)

    @classmethod
    def run_facts(cls, records: Sequence[Record]) -> RunFacts | None:
        """The run's requests against the account's concurrency (`backends.fal_account`)."""
        return account_facts(records)

    @classmethod
    def bench_standin(cls, benchmark: str, demo_dir: Path | None) -> StandIn | str | None:
        """Without a key: the committed recording of `benchmark`, replayed, if there is one."""
        from harness.run.recording import cassette_source

        reason = cls.unavailable_reason()
        replay = REPLAY_SETS.get(benchmark)
        if reason is None or replay is None:
            return reason
        note = (
            f"replayed from the committed recording {replay.relative_to(PACKAGE_ROOT)} "
            f"(recorded against: {cassette_source(replay)}), because {reason}"
        )
        return StandIn(note, replay=replay)

    def describe(self) -> dict[str, Any]:
        import fal_client

        return {
            "app": self.app,
            "endpoint": f"queue: {self.app}",
            "model": "MiniCPM-V 2.6 (hosted; frame sampling and generation settings not exposed)",
            "upload": self.upload,
            "fal_client": fal_client.__version__,
            "fallbacks": "allowed (fal's default)" if self.fallbacks else "disabled",
            "store_io": "fal keeps payloads (30 days)" if self.store_io else "not stored",
            "start_timeout": (
                "time left to each sample's deadline"
                if self.start_timeout is None
                else self.start_timeout
            ),
            "submit_headers": sorted(self._submit_headers()),
            # fal deletes each uploaded video this long after its upload (X-Fal-Object-Lifecycle).
            "upload_lifetime_s": upload_lifetime_s(self._upload_ttl_s(), UPLOAD_GRACE_S),
            "account_concurrency": self.account_concurrency or "not capped here",
            **(self._webhooks.describe() if self._webhooks else {}),
        }

    def _submit_headers(self) -> dict[str, str]:
        """The integrity and privacy headers every submit carries."""
        headers = {}
        if not self.fallbacks:
            headers[DISABLE_FALLBACKS] = "true"
        if not self.store_io:
            headers[STORE_IO] = "0"
        return headers

    def _start_timeout(self) -> float | None:
        """The option, capped at the time left to the sample's deadline less one poll and
        `START_TIMEOUT_MARGIN_S` (so fal's 504 is seen first); None when that is too
        short for fal-client to send (the deadline gives the request up anyway)."""
        left = time_left()
        if left is not None:  # fal's 504 must come before the deadline gives the request up
            left -= self.poll_max_interval + START_TIMEOUT_MARGIN_S
        timeout = self.start_timeout if left is None else min(self.start_timeout or left, left)
        if timeout is None or timeout <= MIN_START_TIMEOUT_S:
            return None
        return round(timeout, 3)

    async def answer(self, query: Query) -> Answer:
        retries = [0]
        _retries.set(retries)
        asked = fingerprint(query.video, query.prompt)
        journaled = self._files.take(query.sample_id, self.app, asked) if self._files else None
        reattached = None
        if journaled is not None:
            try:
                async with self._in_flight.request():
                    return await self._reattach(journaled, retries)
            except BackendError as error:
                if (reattached := resubmitting(journaled, error)) is None:
                    raise
                self._ended(journaled.request_id, reattached["outcome"])
        video_url, upload_s, upload_kind = await self._video_url(query.video)
        try:
            async with self._in_flight.request() as cap_wait:
                answer = await self._ask(query, video_url, retries, asked, reattached)
        except BackendError as failure:
            if failure.kind == DOWNLOAD_ERROR and video_url in self._uploaded:
                # fal no longer has the uploaded copy: the next sample uploads it again.
                self._upload_cache().forget(self._uploaded.pop(video_url))
            raise
        answer.timings["upload"] = upload_s
        if cap_wait is not None:
            answer.timings["cap_wait"] = cap_wait
        answer.meta["video_input"] = upload_kind
        return answer

    async def _ask(
        self,
        query: Query,
        video_url: str,
        retries: list[int],
        asked: str,
        reattached: dict[str, Any] | None,
    ) -> Answer:
        """One request at fal: submit it, journal it, wait for it, read its result."""
        client = self._fal()
        if self._webhooks is not None:
            await self._webhooks.start()  # listening before fal can deliver
        start_timeout = self._start_timeout()
        life = _Life(time.perf_counter(), reattached=reattached)
        life.account = self._in_flight.at_submit()
        retried_before = retries[0]
        try:
            handle = await client.submit(
                self.app,
                {"video_url": video_url, "prompt": query.prompt},
                headers=self._submit_headers(),
                start_timeout=start_timeout,
                webhook_url=self.webhook_url,
            )
        except Exception as exc:
            refused = _as_backend_error(exc)
            if resent := retries[0] - retried_before:  # fal may have run the earlier tries
                refused.details["resent_submits"] = resent
            raise refused from exc
        life.resent_submits = retries[0] - retried_before
        life.request_id = handle.request_id
        note(**life.facts())
        completed, polls, queue_s, output = await self._follow(
            handle,
            life,
            retries,
            journal=(query.sample_id, asked),
            by_webhook=self._webhooks is not None,
        )
        timings = {} if queue_s is None else {"queue": queue_s}
        timings |= _inference(completed)
        meta = _answer_meta(life, polls, retries[0], start_timeout=start_timeout)
        return Answer(text=output, timings=timings, meta=meta)

    async def _reattach(self, journaled: Journaled, retries: list[int]) -> Answer:
        """The answer of a request an earlier session submitted (`--resume`): waited for
        while fal still runs it, its result read once done. Its timings are this
        session's wait, so only fal's `inference` is kept (`PARTIAL_TIMINGS`)."""
        handle = await self._fal().get_handle(self.app, journaled.request_id)
        reattached = {"request_id": journaled.request_id, "submitted_at": journaled.submitted_at}
        life = _Life(time.perf_counter(), handle.request_id, logs=list(journaled.logs))
        life.reattached = reattached
        life.account = self._in_flight.at_submit()  # its states count from the re-attach
        note(**life.facts())
        completed, polls, _, output = await self._follow(handle, life, retries)
        reattached["outcome"] = "fetched" if life.states[0][1] == "COMPLETED" else "waited"
        partial = "re-attached to a request an earlier session submitted: `total` is this wait"
        meta = _answer_meta(life, polls, retries[0], **{PARTIAL_TIMINGS: partial})
        return Answer(text=output, timings=_inference(completed), meta=meta)

    async def _follow(
        self,
        handle: fal_client.AsyncRequestHandle,
        life: _Life,
        retries: list[int],
        journal: tuple[str, str] | None = None,
        by_webhook: bool = False,
    ) -> tuple[fal_client.Completed, int, float | None, str]:
        """Wait for a request (`by_webhook`: for its delivery) and read its answer: (final
        status, polls, seconds queued if seen, output); what fal billed goes on `life`.
        A new request is journaled first (`journal`: its sample id and fingerprint); its
        entry ends once its outcome is known, and stays open when the run is interrupted,
        so a resume can re-attach."""
        queue_s: float | None
        delivery: Delivery | None = None
        try:
            if self._files is not None and journal is not None:
                self._files.submitted(journal[0], handle.request_id, self.app, journal[1])
            if by_webhook:
                completed, polls, queue_s, delivery = await self._delivered(handle, life)
            else:
                completed, polls, queue_s = await self._wait(handle, life)
        except BaseException as exc:
            # Given up before COMPLETED (deadline, Ctrl-C, a failed poll): the request
            # may still be queued or running at fal, so cancel it there too.
            life.cancel = await _cancel_quietly(handle)
            note(**life.facts())
            if isinstance(exc, Exception) or at_deadline():  # not an interrupt
                self._ended(handle.request_id, "given_up", cancel=life.cancel)
            if isinstance(exc, Exception):
                raise life.failed(_as_backend_error(exc, handle.request_id)) from exc
            raise
        if delivery is not None and delivery.status != "OK":
            self._ended(handle.request_id, "error_read")
            raise life.failed(_delivery_error(delivery))
        if completed.error:
            error = await _completed_error(handle, completed)
            self._ended(handle.request_id, "error_read")
            raise life.failed(error)
        try:
            result, units = await fal_billing.fetch_result(handle, retries)
        except Exception as exc:
            raise life.failed(_as_backend_error(exc, handle.request_id)) from exc
        self._ended(handle.request_id, RESULT_READ)
        if self._price is None:
            self._price = fal_billing.PriceReader(self.app)
        life.billing = fal_billing.billing_meta(units, await self._price.read(handle.client))
        output = result.get("output") if isinstance(result, dict) else None
        if not isinstance(output, str):
            keys = ", ".join(result) if isinstance(result, dict) else type(result).__name__
            raise life.failed(
                BackendError("invalid_response", f"fal result has no 'output' text (got: {keys})")
            )
        return completed, polls, queue_s, output

    def _ended(self, request_id: str, outcome: str, **facts: Any) -> None:
        if self._files is not None:
            self._files.ended(request_id, outcome, **facts)

    async def aclose(self) -> None:
        # The uploads' shared client is ours to close; fal-client's own close with the process.
        if self._client is not None:
            await self._client.aclose()
        self._client = None
        if self._files is not None:
            self._files.close()
        if self._webhooks is not None:
            await self._webhooks.close()

    def _fal(self) -> PooledAsyncClient:
        if self._client is None:
            from backends.fal_client_pool import PooledAsyncClient

            key = REPLAY_KEY if self._mode == "replay" else None
            self._client = PooledAsyncClient(key=key)
        return self._client

    async def _video_url(self, video: str) -> tuple[str, float, str]:
        """(URL fal can read, seconds spent uploading, how the video was sent)."""
        if video.startswith(_REMOTE):
            return video, 0.0, "url"
        if reason := not_a_file(Path(video)):
            raise BackendError("video_not_found", f"{video}: {reason}")
        import fal_client

        from harness.media.video import VideoError, probe

        try:  # a file that is not a readable video is refused here, not uploaded
            await asyncio.to_thread(probe, video)
        except VideoError as exc:
            raise BackendError("bad_video", str(exc)) from exc
        started = time.perf_counter()
        if self.upload == "data-uri":
            size_mb = os.path.getsize(video) / 1e6
            if size_mb > self.data_uri_max_mb:
                raise BackendError(
                    "input_too_large",
                    f"{video} is {size_mb:.1f} MB; data-uri mode sends at most "
                    f"{self.data_uri_max_mb:g} MB (raise data_uri_max_mb or use upload=storage)",
                )
            uri = await asyncio.to_thread(fal_client.encode_file, Path(video))
            return uri, time.perf_counter() - started, "data-uri"
        sha256 = await asyncio.to_thread(self._hashes.sha256, video)
        cache = self._upload_cache()
        lifecycle = fal_client.StorageSettings(expires_in=cache.expires_s)

        async def upload() -> str:
            try:
                return await self._fal().upload_file(Path(video), lifecycle=lifecycle)
            except Exception as exc:
                raise _as_backend_error(exc, kind_prefix="upload") from exc

        url, uploaded = await cache.url_for(sha256, upload)
        self._uploaded[url] = sha256
        return url, time.perf_counter() - started, "uploaded" if uploaded else "upload_cached"

    def _upload_cache(self) -> UploadCache:
        if self._uploads is None:
            # Recorded and replayed runs keep uploads in memory, so the cassette holds them all.
            on_disk = self._mode == "live"
            path = (self.upload_cache or cache_root() / "fal-uploads.json") if on_disk else None
            self._uploads = UploadCache(path, ttl_s=self._upload_ttl_s(), grace_s=UPLOAD_GRACE_S)
        return self._uploads

    def _upload_ttl_s(self) -> float:
        return self.upload_ttl_hours * 3600

    async def _delivered(
        self, handle: fal_client.AsyncRequestHandle, life: _Life
    ) -> tuple[fal_client.Completed, int, float | None, Delivery | None]:
        """As `_wait`, by the request's webhook, which is returned too; when none came in
        time, polled (`_wait`), its queue time then known only if a poll saw it queued."""
        import fal_client

        life.webhook = {}
        margin = self.poll_max_interval  # time for a poll before the deadline
        delivery = await self._webhooks.delivery(
            handle.request_id, life.submitted, life.webhook, margin
        )
        if delivery is None:
            try:
                completed, polls, queue_s = await self._wait(handle, life)
            finally:
                life.webhook.update(self._webhooks.seen(handle.request_id))
            queued = life.states[0][1] == "IN_QUEUE"
            return completed, polls, queue_s if queued else None, None
        completed = fal_client.Completed(logs=None, metrics={})
        life.saw(completed)
        note(**life.facts())
        return completed, 0, None, delivery

    async def _wait(
        self, handle: fal_client.AsyncRequestHandle, life: _Life
    ) -> tuple[fal_client.Completed, int, float]:
        """Poll until COMPLETED; (final status, polls, seconds until it left the queue).

        The wait between polls is `poll_backoff` times the time waited so far, kept
        within [poll_interval, poll_max_interval]: long requests are polled rarely,
        yet a measured latency is late by at most that fraction (or the longest wait).
        """
        import fal_client

        polls = 0
        queue_s: float | None = None
        replaying = self._mode == "replay"
        while True:
            status = await handle.status(with_logs=True)
            polls += 1
            life.saw(status)
            note(**life.facts())
            if self._files is not None:
                self._files.log(handle.request_id, life.logs)
            waited = time.perf_counter() - life.submitted
            if queue_s is None and not isinstance(status, fal_client.Queued):
                queue_s = waited
            if isinstance(status, fal_client.Completed):
                return status, polls, queue_s or 0.0
            interval = min(
                max(self.poll_interval, self.poll_backoff * waited), self.poll_max_interval
            )
            await asyncio.sleep(0 if replaying else interval)


def _answer_meta(life: _Life, polls: int, retries: int, **more: Any) -> dict[str, Any]:
    """An answer's meta: its request's life (`_Life.facts`, less the last state, which
    an answer's is), what fal billed, the polls and retries it took, and `more`."""
    facts = life.facts()
    del facts["last_state"]
    meta = {"polls": polls, "retries": retries, "frames": NOT_REPORTED, **more, **facts}
    if life.billing is not None:
        meta["billing"] = life.billing
    return meta


def _inference(completed: fal_client.Completed) -> dict[str, float]:
    """fal's `inference_time` of a completed request, as the `inference` timing, if it says."""
    inference = completed.metrics.get("inference_time") if completed.metrics else None
    return {"inference": float(inference)} if isinstance(inference, int | float) else {}


async def _cancel_quietly(handle: fal_client.AsyncRequestHandle) -> str:
    """Ask fal to cancel the request, waiting at most `CANCEL_TIMEOUT_S`; say how that went
    (fal's answer: OK when it was still queued, CANCELLATION_REQUESTED when it was running,
    ALREADY_COMPLETED, ...), never raising, so nothing hides why it was cancelled."""
    import fal_client

    try:
        async with asyncio.timeout(CANCEL_TIMEOUT_S):
            return await asyncio.shield(fal_billing.cancel(handle, _retries.get() or [0]))
    except fal_client.FalClientHTTPError as exc:
        return f"refused: HTTP {exc.status_code}"
    except TimeoutError:
        return f"no answer within {CANCEL_TIMEOUT_S:g} s"
    except asyncio.CancelledError:
        return "interrupted"
    except Exception as exc:
        return f"failed: {_as_backend_error(exc).message}"


async def _completed_error(
    handle: fal_client.AsyncRequestHandle, completed: fal_client.Completed
) -> BackendError:
    """A request COMPLETED with an error, as its result's error body (fetched) says; the
    status's error when that body says nothing more."""
    kind = completed.error_type or "completed_with_error"
    details: dict[str, Any] = {"request_id": handle.request_id, "status_error": completed.error}
    import fal_client

    try:
        await handle.get()
    except fal_client.FalClientHTTPError as exc:
        error = _as_backend_error(exc, handle.request_id)
        return BackendError(error.kind, error.message, **{**details, **error.details})
    except Exception as exc:  # unreadable: the status's error stands
        details["error_body"] = f"not read: {_as_backend_error(exc).message}"
    return BackendError(kind, str(completed.error), **details)


def _delivery_error(delivery: Delivery) -> BackendError:
    """An ERROR delivery as the error its result would have raised: fal's `error` names
    the result's HTTP status, and the payload is its error body."""
    import fal_client
    import httpx

    details = {"request_id": delivery.request_id, "webhook_error": delivery.error}
    status = delivery.http_status()
    if status is None:
        return BackendError("webhook_error", str(delivery.error), **details)
    body = delivery.payload if isinstance(delivery.payload, dict) else {}
    detail: Any = body.get("detail", delivery.error)  # text, or validation errors
    refused = fal_client.FalClientHTTPError(
        detail,
        status,
        {},
        response=httpx.Response(status, json=delivery.payload),
        error_type=body.get("error_type"),
    )
    error = _as_backend_error(refused, delivery.request_id)
    return BackendError(error.kind, error.message, **{**error.details, **details})


def _as_backend_error(
    exc: BaseException, request_id: str | None = None, *, kind_prefix: str = ""
) -> BackendError:
    import fal_client
    import httpx
    from fal_client.auth import MissingCredentialsError

    details: dict[str, Any] = {"request_id": request_id} if request_id else {}
    if isinstance(exc, BackendError):  # a replay's miss (`NotRecorded`) keeps its kind
        return BackendError(exc.kind, exc.message, **exc.details, **details)
    prefix = f"{kind_prefix}_" if kind_prefix else ""
    if isinstance(exc, fal_client.FalClientHTTPError):
        details["status_code"] = exc.status_code
        headers = {k.lower(): v for k, v in exc.response_headers.items()}
        kind = (
            exc.error_type
            or _model_error_type(exc.message)
            or _KIND_BY_STATUS.get(exc.status_code, f"http_{exc.status_code}")
        )
        message = _detail_text(exc.message)
        if exc.status_code == 504 and headers.get(REQUEST_TIMEOUT_TYPE.lower()) == "user":
            # Our own X-Fal-Request-Timeout passed before any runner took the request.
            kind = "start_timeout"
            message = (
                f"fal did not start the request within its start timeout "
                f"(X-Fal-Request-Timeout; queue wait counts): {message}"
            )
        retry_after = headers.get("retry-after")
        if retry_after is not None:  # fal-client 1.0.x retries on its own schedule, not this
            details["retry_after"] = retry_after
            message += f" (HTTP {exc.status_code}, Retry-After: {retry_after})"
        return BackendError(prefix + kind, message, **details)
    if isinstance(exc, json.JSONDecodeError):
        return BackendError(
            prefix + "invalid_response", f"fal returned a body that is not JSON: {exc}", **details
        )
    if isinstance(exc, httpx.TransportError):
        return BackendError(prefix + "transport_error", f"{type(exc).__name__}: {exc}", **details)
    if isinstance(exc, MissingCredentialsError):
        return BackendError("missing_credentials", str(exc))
    return BackendError(prefix + type(exc).__name__, str(exc) or type(exc).__name__, **details)


def _model_error_type(detail: Any) -> str | None:
    """The `type` of a model error fal documents (a `detail` list whose objects link to
    docs.fal.ai/errors, e.g. `file_download_error`); None for any other body, such as a
    validation error, whose types say only what was malformed."""
    if not isinstance(detail, list) or not detail:
        return None
    first = detail[0]
    if isinstance(first, dict) and str(first.get("url", "")).startswith(_FAL_ERROR_DOCS):
        return str(first.get("type") or "") or None
    return None


def _detail_text(detail: Any) -> str:
    """fal's `detail`: a message, a list of validation errors with `loc` and `msg`, or an
    HTML error page (a proxy's), shortened to its title."""
    if isinstance(detail, str) and (title := _HTML_TITLE.search(detail)):
        return f"{title[1].strip()} (HTML error page)"
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{where}: {item.get('msg', item)}" if where else str(item.get("msg")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


class _RetryCounter(logging.Filter):
    """Counts fal-client's retry log records into the current sample's counter.

    fal-client retries inside its request helper and reports each retry only as
    a DEBUG log record; log records are made in the task that retries, so the
    context variable names the sample. The logger is set to DEBUG for that, so
    this filter passes on only what it would pass without: records at or above
    the level it had, or (as by default) the level its parents have now.
    """

    def __init__(self, logger: logging.Logger, level: int) -> None:
        super().__init__()
        self.logger = logger
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Retrying request"):
            counter = _retries.get()
            if counter is not None:
                counter[0] += 1
        parent = self.logger.parent
        floor = self.level or (parent.getEffectiveLevel() if parent else logging.WARNING)
        return record.levelno >= floor


def _has_fal_credentials() -> bool:
    """Whether fal-client would find credentials, looked for in its order (fal_client/auth.py
    of 1.0.x) without importing it or refreshing a login: FAL_KEY, or FAL_KEY_ID with
    FAL_KEY_SECRET (unless FAL_FORCE_AUTH_BY_USER=1), else the token `fal auth login` saved.
    A Colab secret, which fal-client also reads, is not looked for."""
    environ = os.environ
    if environ.get("FAL_FORCE_AUTH_BY_USER") != "1" and (
        environ.get("FAL_KEY") or (environ.get("FAL_KEY_ID") and environ.get("FAL_KEY_SECRET"))
    ):
        return True
    home = Path(environ.get("FAL_HOME_DIR", "~/.fal")).expanduser()
    return (home / "auth0_token").is_file()


class _NoReplayMisses(logging.Filter):
    """Drops fal-client's warning that an upload failed, before it tries another storage,
    when a replay did not hold the upload: the sample's record says so, and the run once."""

    def filter(self, record: logging.LogRecord) -> bool:
        from harness.run.recording import NotRecorded

        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(arg, NotRecorded) for arg in args)


def _filter_fal_logs() -> None:
    """Count fal-client's retries (`_RetryCounter`) and quiet its replay misses."""
    logger = logging.getLogger("fal_client.client")
    if any(isinstance(f, _RetryCounter) for f in logger.filters):
        return
    logger.addFilter(_NoReplayMisses())
    logger.addFilter(_RetryCounter(logger, logger.level))
    logger.setLevel(logging.DEBUG)
