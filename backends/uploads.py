"""Upload each local video once per content hash: within a run, and across runs on disk.

The disk cache maps sha256 -> (URL, upload time) in one small JSON file and
forgets entries older than its time to live, since hosted files expire.
Concurrent questions about the same video share one upload in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from harness.files import write_json_atomic

_CHUNK = 1 << 20


class _Abandoned(Exception):
    """The upload that others waited on was cancelled."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class UploadCache:
    """sha256 -> URL of an uploaded copy; `path` None keeps it in memory only."""

    def __init__(self, path: Path | None, ttl_s: float) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self._urls: dict[str, tuple[str, float]] = self._load()
        self._in_flight: dict[str, asyncio.Future[str]] = {}

    async def url_for(self, sha256: str, upload: Callable[[], Awaitable[str]]) -> tuple[str, bool]:
        """The URL for content `sha256`, uploading it with `upload` if needed; (url, uploaded)."""
        while True:
            cached = self._urls.get(sha256)
            if cached and time.time() - cached[1] < self.ttl_s:
                return cached[0], False
            pending = self._in_flight.get(sha256)
            if pending is None:
                break
            try:
                return await asyncio.shield(pending), False
            except _Abandoned:
                continue  # the uploader was cancelled: upload it here instead
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._in_flight[sha256] = future
        try:
            url = await upload()
        except BaseException as exc:
            future.set_exception(_Abandoned() if isinstance(exc, asyncio.CancelledError) else exc)
            future.exception()  # retrieved here, so an unawaited failure is not reported twice
            raise
        finally:
            del self._in_flight[sha256]
        future.set_result(url)
        self._urls[sha256] = (url, time.time())
        self._save()
        return url, True

    def _load(self) -> dict[str, tuple[str, float]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
            return {sha: (entry["url"], float(entry["uploaded_at"])) for sha, entry in data.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}  # a damaged cache only costs re-uploads

    def _save(self) -> None:
        if self.path is None:
            return
        now = time.time()
        fresh = {
            sha: {"url": url, "uploaded_at": at}
            for sha, (url, at) in self._urls.items()
            if now - at < self.ttl_s
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, fresh)
