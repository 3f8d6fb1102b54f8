"""Route the httpx clients a block creates to an in-process emulator.

httpx.AsyncClient and httpx.Client build their default (and proxy) transports from
the module globals swapped here; clients given an explicit transport are unaffected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx


@contextlib.contextmanager
def routed_to(
    async_transport: httpx.AsyncBaseTransport, sync_transport: httpx.BaseTransport
) -> Iterator[None]:
    """Every httpx client created inside the block uses these transports."""
    saved = (httpx._client.AsyncHTTPTransport, httpx._client.HTTPTransport)

    def make_async(*args: Any, **kwargs: Any) -> httpx.AsyncBaseTransport:
        return async_transport

    def make_sync(*args: Any, **kwargs: Any) -> httpx.BaseTransport:
        return sync_transport

    httpx._client.AsyncHTTPTransport = make_async  # type: ignore[assignment,misc]
    httpx._client.HTTPTransport = make_sync  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        httpx._client.AsyncHTTPTransport, httpx._client.HTTPTransport = saved
