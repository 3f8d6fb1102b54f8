"""fal's file storage as the emulator serves it: stored files with their lifetimes, the
CDN's multipart uploads, and the model's download of a request's `video_url`.

Checked against fal-client 1.0.3's `AsyncMultipartUpload` (the requests it makes: POST
`{base_url}/files/upload/multipart` with `X-Fal-File-Name` and the lifecycle header,
answered `{"access_url", "uploadId"}`; PUT `{access_url}/multipart/{uploadId}/{n}`,
whose `ETag` it keeps; POST `.../complete` with `{"parts": [{"partNumber", "etag"}]}`),
its `_object_lifecycle_headers` (`X-Fal-Object-Lifecycle` on the CDN, `-Preference` on
storage initiation, JSON `{"expiration_duration_seconds": N}`), fal's "Working with
files" page (an app downloads each input URL itself with `download_file`, data: URIs
decoded without a request) and fal's errors page (a model error is a 422 whose `detail`
is a list of `{loc, msg, type, url, input}`; a URL that cannot be fetched is
`file_download_error`). What a download failure reads like beyond that, and the
storage's default retention (here: none), are stand-ins.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

CDN_HOST = "v3.fal.media"
LIFECYCLE_HEADERS = ("x-fal-object-lifecycle", "x-fal-object-lifecycle-preference")
DOWNLOAD_ERROR = "file_download_error"
DOWNLOAD_MESSAGE = "Failed to download the file. Please check if the URL is accessible."
# Hosts no hosted model can reach: a user's own machine or network, or reserved names.
_ID_NAMESPACE = uuid.UUID("0f4c2b9e-3a51-4d0e-9c7e-5b8f1d2a6c33")
_UNREACHABLE_SUFFIXES = (".invalid", ".test", ".local", ".localhost", ".internal")


@dataclass
class StoredFile:
    data: bytes
    content_type: str
    expires_at: float | None  # on the storage's clock; None: kept


@dataclass
class _Multipart:
    path: str  # where the file will be on the CDN
    content_type: str
    expires_in: float | None
    parts: dict[int, bytes] = field(default_factory=dict)


class FalStorage:
    """Files on fal's CDN by path, each kept for the lifetime its upload asked for.

    `clock` is the storage's wall clock (tests move it to expire files). Every upload's
    lifecycle preference is kept in `lifecycles` (path -> the parsed header), so tests
    can assert what the client asked for.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.files: dict[str, StoredFile] = {}
        self.lifecycles: dict[str, dict[str, Any] | None] = {}
        self.multipart_parts: list[tuple[str, int, int]] = []  # (upload id, part, size)
        self._multipart: dict[str, _Multipart] = {}
        self._uploads_started = 0

    def put(self, path: str, data: bytes, content_type: str, headers: httpx.Headers) -> None:
        """Store a whole upload at `path`, for the lifetime its headers ask."""
        lifecycle = _lifecycle(headers)
        self.lifecycles[path] = lifecycle
        self.files[path] = StoredFile(data, content_type, self._expiry(lifecycle))

    def get(self, path: str) -> StoredFile | None:
        """The file at `path`, unless there is none or it has expired (then it is deleted)."""
        stored = self.files.get(path)
        if (
            stored is not None
            and stored.expires_at is not None
            and self.clock() >= stored.expires_at
        ):
            del self.files[path]
            return None
        return stored

    def download(self, url: str) -> str | None:
        """What the model's download of `url` fails with, or None when it reads it."""
        if url.startswith("data:"):
            _, _, payload = url.partition(",")
            try:
                base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                return "the data URI is not valid base64"
            return None
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https"):
            return f"unsupported URL scheme {parsed.scheme!r}"
        if parsed.host == CDN_HOST:
            return None if self.get(parsed.path) is not None else "404 Not Found from the CDN"
        if _private(parsed.host):
            return f"{parsed.host} cannot be reached from fal's runners"
        return None  # any other public URL: a stand-in, the emulator reaches no network

    # -- the CDN's multipart upload -------------------------------------------------------

    def multipart(self, request: httpx.Request) -> httpx.Response:
        """Serve one request of a multipart upload (start, a part, complete)."""
        path = request.url.path
        if request.method == "POST" and path == "/files/upload/multipart":
            return self._start_multipart(request)
        prefix, _, rest = path.partition("/multipart/")
        upload_id, _, step = rest.partition("/")
        upload = self._multipart.get(upload_id)
        if upload is None or upload.path != prefix:
            return _json(404, {"detail": "Multipart upload not found"})
        if request.method == "PUT" and step.isdigit():
            number = int(step)
            upload.parts[number] = request.content
            self.multipart_parts.append((upload_id, number, len(request.content)))
            return httpx.Response(200, headers={"etag": _etag(request.content)})
        if request.method == "POST" and step == "complete":
            return self._complete_multipart(upload_id, upload, request)
        return _json(405, {"detail": "Method Not Allowed"})

    def _start_multipart(self, request: httpx.Request) -> httpx.Response:
        name = safe_name(request.headers.get("x-fal-file-name"))
        self._uploads_started += 1  # ids deterministic, so recordings are reproducible
        upload_id = uuid.uuid5(_ID_NAMESPACE, f"multipart:{self._uploads_started}").hex
        path = f"/files/{upload_id[:16]}/{name}"
        lifecycle = _lifecycle(request.headers)
        self.lifecycles[path] = lifecycle
        content_type = request.headers.get("content-type", "application/octet-stream")
        expires_in = (lifecycle or {}).get("expiration_duration_seconds")
        self._multipart[upload_id] = _Multipart(path, content_type, expires_in)
        return _json(200, {"access_url": f"https://{CDN_HOST}{path}", "uploadId": upload_id})

    def _complete_multipart(
        self, upload_id: str, upload: _Multipart, request: httpx.Request
    ) -> httpx.Response:
        try:
            listed = {int(p["partNumber"]): p["etag"] for p in json.loads(request.content)["parts"]}
        except (ValueError, KeyError, TypeError):
            return _json(400, {"detail": "Invalid parts list"})
        if sorted(listed) != list(range(1, len(upload.parts) + 1)) or any(
            _etag(upload.parts.get(number, b"")) != etag for number, etag in listed.items()
        ):
            return _json(400, {"detail": "Parts missing or ETags do not match"})
        data = b"".join(upload.parts[number] for number in sorted(listed))
        expires_at = None if upload.expires_in is None else self.clock() + upload.expires_in
        self.files[upload.path] = StoredFile(data, upload.content_type, expires_at)
        del self._multipart[upload_id]
        return _json(200, {"access_url": f"https://{CDN_HOST}{upload.path}"})

    def _expiry(self, lifecycle: dict[str, Any] | None) -> float | None:
        seconds = (lifecycle or {}).get("expiration_duration_seconds")
        return None if seconds is None else self.clock() + float(seconds)


def download_failure(url: str, reason: str) -> dict[str, Any]:
    """The 422 body of a request whose `video_url` the model could not download."""
    return {
        "detail": [
            {
                "loc": ["body", "video_url"],
                "msg": DOWNLOAD_MESSAGE,
                "type": DOWNLOAD_ERROR,
                "url": f"https://docs.fal.ai/errors#{DOWNLOAD_ERROR}",
                "ctx": {"reason": reason},
                "input": url,
            }
        ]
    }


def _lifecycle(headers: httpx.Headers) -> dict[str, Any] | None:
    for name in LIFECYCLE_HEADERS:
        if name in headers:
            try:
                parsed = json.loads(headers[name])
            except ValueError:
                return None
            return parsed if isinstance(parsed, dict) else None
    return None


def _private(host: str) -> bool:
    if host == "localhost" or host.endswith(_UNREACHABLE_SUFFIXES):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'  # an ETag, as S3-style stores make it


def safe_name(name: Any) -> str:
    """A file name as a store keeps it: the last path part, odd characters replaced."""
    if not isinstance(name, str) or not name.strip():
        return "upload.bin"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.strip().rsplit("/", 1)[-1])


def _json(status: int, body: Any) -> httpx.Response:
    return httpx.Response(
        status, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
