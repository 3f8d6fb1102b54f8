"""What fal billed for each request, what its unit costs, and what a run cost.

fal bills each model per its own output unit (per GPU-second only where a model has no
output price), never for queue time or server errors (docs.fal.ai "Pricing"). The
result of a request carries the units billed in its `x-fal-billable-units` header,
which fal-client 1.0.x's `handle.get()` drops; so the result is fetched here with one
documented request of our own (GET the handle's `response_url`), and so is a cancel,
whose answer fal-client also drops: `OK` (the request was removed from the queue),
`CANCELLATION_REQUESTED` (it was running: its app was signalled and may run on, and
bill), `ALREADY_COMPLETED` or `NOT_FOUND` (docs.fal.ai "Cancel a request"). The
endpoint's unit price is read once per backend from fal's pricing API (`GET
https://api.fal.ai/v1/models/pricing?endpoint_id=...`, docs.fal.ai "Platform APIs:
Pricing"); a failure to read it is noted in the records, never fatal.

Requests go through the handle's own httpx client (fal-client's credentials, and its
backup queue host), so a recording holds them and a replay answers them. They are
retried as fal-client retries its own: transport errors, 408/409/429 and ingress
502/503/504 (no `x-fal-request-id`, an nginx page), as many times and with the same
backoff (its `_get_retry_delay`, so a test that stubs that stubs these waits too).
Errors come out as fal-client's (`FalClientHTTPError`, httpx's, a JSON decode error),
so the backend maps them into the same kinds; a result gone (404 after COMPLETED) is
`result_expired`.

`estimate_cost` prices a run by each answer's billed units times the unit price its
record carries, falling back to the per-second estimate (`inference` seconds times a
given price) only for answers without them, and says so; requests that may have been
billed without an answer (re-sent submits, cancels of running requests, expired
results) are counted in its basis, not priced.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.protocols import Cost
from harness.types import BackendError, Record, finite_number, whole_number

if TYPE_CHECKING:
    import fal_client
    import httpx

BILLABLE_UNITS = "x-fal-billable-units"
PRICING_URL = "https://api.fal.ai/v1/models/pricing"
ATTEMPTS = 10  # as fal-client 1.0.x (MAX_ATTEMPTS)
# As fal-client's queue requests: a stall at connect is seen well before the whole timeout.
TIMEOUT_S, CONNECT_TIMEOUT_S = 120.0, 30.0
_RETRY_CODES = (408, 409, 429)
_INGRESS_CODES = (502, 503, 504)

RESULT_KEPT = "fal keeps a result 1 h after the request completes, 6 min when it is 10 KB or more"
RUNNING_CANCEL = "CANCELLATION_REQUESTED"
"""fal's answer to a cancel of a running request: its app may run on and bill."""
EXPIRED = "result_expired"
NO_UNITS = "no record carries fal's billed units and unit price"
DESCRIBED_CHARS = 300
"""The longest reason a record gives for a price not read."""


@dataclass(frozen=True)
class Price:
    """The endpoint's price per unit, as fal's pricing API gives it."""

    unit_price: float
    unit: str
    currency: str


async def fetch_result(
    handle: fal_client.AsyncRequestHandle, retries: list[int]
) -> tuple[Any, float | None]:
    """The COMPLETED request's result (its JSON) and the units fal billed for it (None
    when the result does not say); counts retries into `retries[0]`."""
    response = await _send(handle.client, "GET", handle.response_url, retries)
    if response.status_code == 404:  # COMPLETED a moment ago, and gone
        raise BackendError(
            EXPIRED,
            f"fal no longer holds the result ({RESULT_KEPT}): HTTP 404 {_detail(response)}",
            status_code=404,
        )
    if not response.is_success:
        raise _http_error(response)
    return response.json(), billed_units(response.headers)


async def cancel(handle: fal_client.AsyncRequestHandle, retries: list[int]) -> str:
    """Ask fal to cancel the request; fal's answer (`OK`, `CANCELLATION_REQUESTED`,
    `ALREADY_COMPLETED`, `NOT_FOUND`), or raises as fal-client would for an answer
    without one."""
    response = await _send(handle.client, "PUT", handle.cancel_url, retries)
    try:
        answer = response.json()["status"]
    except (ValueError, KeyError, TypeError):
        answer = None
    if isinstance(answer, str):
        return answer
    if not response.is_success:
        raise _http_error(response)
    return f"HTTP {response.status_code} without a status"


def billed_units(headers: httpx.Headers) -> float | None:
    """`x-fal-billable-units` as a finite number of units, or None."""
    try:
        units = float(headers[BILLABLE_UNITS])
    except (KeyError, ValueError):
        return None
    return units if math.isfinite(units) and units >= 0 else None


class PriceReader:
    """The endpoint's unit price from fal's pricing API: read at the first call, once,
    and kept (a price, or why there is none)."""

    def __init__(self, endpoint_id: str) -> None:
        self.endpoint_id = endpoint_id
        self._price: Price | str | None = None
        self._lock = asyncio.Lock()

    async def read(self, client: httpx.AsyncClient) -> Price | str:
        async with self._lock:
            if self._price is None:
                self._price = await self._fetch(client)
            return self._price

    async def _fetch(self, client: httpx.AsyncClient) -> Price | str:
        params = {"endpoint_id": self.endpoint_id}
        try:
            response = await _send(client, "GET", PRICING_URL, [0], params=params)
            if not response.is_success:
                raise _http_error(response)
            return price_of(response.json(), self.endpoint_id)
        except Exception as exc:  # a replay's recording may hold no price (NotRecorded)
            return f"not read: {_describe(exc)}"


def price_of(body: Any, endpoint_id: str) -> Price | str:
    """The price fal's pricing API answered for `endpoint_id`, or why there is none."""
    prices = body.get("prices") if isinstance(body, dict) else None
    for entry in prices if isinstance(prices, list) else ():
        if isinstance(entry, dict) and entry.get("endpoint_id") == endpoint_id:
            unit_price, unit, currency = (entry.get(k) for k in ("unit_price", "unit", "currency"))
            if (
                finite_number(unit_price)
                and unit_price >= 0
                and isinstance(unit, str)
                and isinstance(currency, str)
            ):
                return Price(float(unit_price), unit, currency)
            return f"not read: fal's pricing API gave an unreadable price for {endpoint_id}"
    return f"not read: fal's pricing API lists no price for {endpoint_id}"


def billing_meta(units: float | None, price: Price | str) -> dict[str, Any]:
    """What a record keeps of its billing: units, and the unit price (or why none)."""
    if isinstance(price, str):
        return {"units": units, "price": price}
    return {
        "units": units,
        "unit": price.unit,
        "unit_price": price.unit_price,
        "currency": price.currency,
    }


def estimate_cost(records: Sequence[Record], price: float | None) -> Cost:
    """USD per 1,000 answers: each answer's billed units times its unit price; the
    per-second estimate (`inference`, else `total`, times `price` USD per second) for
    answers whose record lacks them, labelled; None where that needs a price not given."""
    answered = [r for r in records if r.ok]
    unbilled = _billed_without_answer(records)
    if not answered:
        return Cost(None, "no answered samples" + unbilled)
    usd = [_billed_usd(r) for r in answered]
    billed = [amount for amount in usd if amount is not None]
    rest = [r for r, amount in zip(answered, usd, strict=True) if amount is None]
    by_units = _by_units_basis(answered) if billed else ""
    if not rest:
        return Cost(1000 * sum(billed) / len(answered), by_units + unbilled)
    if price is None:
        missing = (
            NO_UNITS
            if not billed
            else f"{len(rest)} of {len(answered)} answers lack fal's billed units or unit price"
        )
        return Cost(None, f"{missing}, and no fal price per second was given" + unbilled)
    seconds = [r.timings.get("inference", r.timings.get("total", 0.0)) for r in rest]
    per_second = (
        f"mean {sum(seconds) / len(rest):.3f} s of fal inference per answer at ${price:g}/s"
    )
    if without := sum("inference" not in r.timings for r in rest):
        per_second += f" ({without} of {len(rest)} without `inference`: `total` used)"
    if billed:
        basis = f"{by_units}; a per-second estimate for the other {len(rest)}: {per_second}"
    else:
        basis = f"{per_second}: a per-second estimate, {NO_UNITS}"
    return Cost(1000 * (sum(billed) + price * sum(seconds)) / len(answered), basis + unbilled)


def _by_units_basis(answered: Sequence[Record]) -> str:
    billings = [r.meta["billing"] for r in answered if _billed_usd(r) is not None]
    units = {b["unit"] for b in billings}
    prices = sorted({(b["unit_price"], b["unit"]) for b in billings})
    at = ", ".join(f"${p:g} per {unit}" for p, unit in prices)
    mean = sum(b["units"] for b in billings) / len(billings)
    per_answer = f"mean {mean:.4g} units ({units.pop()}) per answer " if len(units) == 1 else ""
    return (
        f"fal's billed units (x-fal-billable-units) times the unit price from its pricing "
        f"API for {len(billings)} of {len(answered)} answers: {per_answer}at {at}"
    )


def _billed_usd(record: Record) -> float | None:
    """The record's billed units times its unit price, where it carries both (in USD)."""
    billing = record.meta.get("billing")
    if not isinstance(billing, dict) or billing.get("currency") != "USD":
        return None
    units, unit_price = billing.get("units"), billing.get("unit_price")
    if not (
        finite_number(units) and finite_number(unit_price) and isinstance(billing.get("unit"), str)
    ):
        return None
    return float(units) * float(unit_price)


def _billed_without_answer(records: Sequence[Record]) -> str:
    """The requests fal may have billed without an answer, as the tail of a basis."""
    resent = cancelled = expired = 0
    for record in records:
        facts = record.meta if record.ok else record.error.details if record.error else {}
        count = facts.get("resent_submits")
        resent += count if whole_number(count) else 0
        cancelled += facts.get("cancel") == RUNNING_CANCEL
        expired += record.error is not None and record.error.kind == EXPIRED
    parts = [
        f"{resent} submit(s) fal-client re-sent (fal may have run each twice)" if resent else "",
        f"{cancelled} request(s) cancelled while running (the app may have run on and billed)"
        if cancelled
        else "",
        f"{expired} result(s) billed but expired before they were read" if expired else "",
    ]
    listed = ", ".join(p for p in parts if p)
    return f"; billed without an answer, not priced: {listed}" if listed else ""


async def _send(
    client: httpx.AsyncClient, method: str, url: str, retries: list[int], **kwargs: Any
) -> httpx.Response:
    """One request, retried as fal-client retries (`ATTEMPTS` tries at most)."""
    import httpx
    from fal_client.client import _get_retry_delay

    timeout = httpx.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    attempt = 1
    while True:
        try:
            response = await client.request(method, url, timeout=timeout, **kwargs)
        except httpx.TransportError:
            if attempt >= ATTEMPTS:
                raise
        else:
            if attempt >= ATTEMPTS or not _retried(response):
                return response
        retries[0] += 1
        await asyncio.sleep(_get_retry_delay(attempt, 0.1, 10, "exponential", True))
        attempt += 1


def _retried(response: httpx.Response) -> bool:
    """Whether fal-client would retry this answer: 408/409/429, or an ingress error
    (502/503/504 from the proxy, without fal's request id)."""
    if response.status_code in _RETRY_CODES:
        return True
    return (
        response.status_code in _INGRESS_CODES
        and "x-fal-request-id" not in response.headers
        and "nginx" in response.text
    )


def _http_error(response: httpx.Response) -> fal_client.FalClientHTTPError:
    """The error fal-client raises for this answer: fal's `detail` and error type."""
    import fal_client

    body = _body(response)
    error_type = body.get("error_type") if isinstance(body, dict) else None
    return fal_client.FalClientHTTPError(
        _detail(response),
        response.status_code,
        dict(response.headers),
        response=response,
        error_type=error_type or response.headers.get("x-fal-error-type"),
    )


def _detail(response: httpx.Response) -> Any:
    """fal's `detail` of an error answer, else its text."""
    body = _body(response)
    return body.get("detail", response.text) if isinstance(body, dict) else response.text


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _describe(exc: Exception) -> str:
    """A short line for why the price was not read."""
    import fal_client

    if isinstance(exc, fal_client.FalClientHTTPError):
        text = f"HTTP {exc.status_code} {exc.message}"
    elif isinstance(exc, BackendError):
        text = exc.message
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= DESCRIBED_CHARS else text[: DESCRIBED_CHARS - 1] + "…"
