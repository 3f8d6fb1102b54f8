"""fal-client's `AsyncClient` with one CDN connection pool for all of a run's uploads.

fal-client 1.0.x opens a new httpx client for every upload (`AsyncClient._cdn_client`):
a new TLS context and a new connection to the CDN each time, 25 ms or more per video
before any byte is sent. This subclass hands every upload the same httpx client,
closed with `aclose`. It overrides a private method of the pinned 1.0.x line
(`tests/test_fal_storage.py` checks that the method is still there and still used).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import fal_client
import httpx
from fal_client.client import USER_AGENT


@dataclass
class PooledAsyncClient(fal_client.AsyncClient):
    """`fal_client.AsyncClient` whose uploads share one httpx client."""

    _cdn: httpx.AsyncClient | None = field(default=None, init=False, repr=False)

    @asynccontextmanager
    async def _cdn_client(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._cdn is None:  # as fal-client builds its own, once
            self._cdn = httpx.AsyncClient(
                headers={"User-Agent": USER_AGENT}, timeout=self.default_timeout
            )
        yield self._cdn

    async def aclose(self) -> None:
        """Close the uploads' shared client."""
        if self._cdn is not None:
            await self._cdn.aclose()
            self._cdn = None
