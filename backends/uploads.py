"""Upload each local video once per content hash: within a run, and across runs on disk.

The disk cache maps sha256 -> (URL, upload time, when fal deletes the file) in one
small JSON file. Each upload asks fal to keep the file `grace_s` longer than the cache
hands its URL out (`ttl_s`), so a URL the cache gives a sample is still readable while
the sample's request waits and runs: the cache never hands out a deleted file.
Concurrent questions about the same video share one upload in flight, and a file is
hashed once per (path, size, mtime) (`ContentHashes`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
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


class ContentHashes:
    """sha256 of local files, computed once per (real path, size, mtime): a video asked
    about many times is read once, even by questions asked at once from several threads,
    and an edited one is hashed again."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int], str] = {}
        self._locks: dict[tuple[str, int, int], threading.Lock] = {}
        self._guard = threading.Lock()
        self.computed = 0  # how many files were actually read

    def sha256(self, path: str | os.PathLike[str]) -> str:
        real = os.path.realpath(path)
        stat = os.stat(real)
        key = (real, stat.st_size, stat.st_mtime_ns)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            known = self._known.get(key)
            if known is None:
                known = self._known[key] = file_sha256(real)
                self.computed += 1
        return known


def upload_lifetime_s(ttl_s: float, grace_s: float) -> int:
    """How long an upload reused for `ttl_s` asks fal to keep its file: `grace_s` more,
    rounded up to whole seconds."""
    return int(ttl_s + grace_s + 0.999)


class UploadCache:
    """sha256 -> URL of an uploaded copy; `path` None keeps it in memory only.

    A URL is handed out for `ttl_s` after its upload, and only while fal keeps the file
    at least `grace_s` more (uploads ask fal to keep files `ttl_s + grace_s`: `expires_s`).
    An entry that does not say when fal deletes its file is not used.
    """

    def __init__(self, path: Path | None, ttl_s: float, grace_s: float) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self.grace_s = grace_s
        self._urls: dict[str, tuple[str, float, float]] = self._load()
        self._in_flight: dict[str, asyncio.Future[str]] = {}

    @property
    def expires_s(self) -> int:
        """How long each upload asks fal to keep its file, in whole seconds."""
        return upload_lifetime_s(self.ttl_s, self.grace_s)

    def forget(self, sha256: str) -> None:
        """Stop handing out the URL of `sha256` (fal could not read it)."""
        if self._urls.pop(sha256, None) is not None:
            self._save()

    async def url_for(self, sha256: str, upload: Callable[[], Awaitable[str]]) -> tuple[str, bool]:
        """The URL for content `sha256`, uploading it with `upload` if needed; (url, uploaded)."""
        while True:
            cached = self._urls.get(sha256)
            if cached and self._usable(cached):
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
        started = time.time()  # fal counts the file's lifetime from no earlier than this
        try:
            url = await upload()
        except BaseException as exc:
            future.set_exception(_Abandoned() if isinstance(exc, asyncio.CancelledError) else exc)
            future.exception()  # retrieved here, so an unawaited failure is not reported twice
            raise
        finally:
            del self._in_flight[sha256]
        future.set_result(url)
        self._urls[sha256] = (url, started, started + self.expires_s)
        self._save()
        return url, True

    def _usable(self, entry: tuple[str, float, float]) -> bool:
        _, uploaded_at, expires_at = entry
        now = time.time()
        return now - uploaded_at < self.ttl_s and now + self.grace_s <= expires_at

    def _load(self) -> dict[str, tuple[str, float, float]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
            return {
                sha: (entry["url"], float(entry["uploaded_at"]), float(entry["expires_at"]))
                for sha, entry in data.items()
                if "expires_at" in entry  # older entries: when fal deletes the file is unknown
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}  # a damaged cache only costs re-uploads

    def _save(self) -> None:
        if self.path is None:
            return
        fresh = {
            sha: {"url": url, "uploaded_at": at, "expires_at": expires}
            for sha, (url, at, expires) in self._urls.items()
            if self._usable((url, at, expires))
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, fresh)
