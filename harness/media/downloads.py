"""Videos given as http(s) URLs, downloaded once for backends that decode locally.

A URL's file is kept under the harness cache by the URL's sha256, written to a
temporary file and renamed, so a failed or killed download leaves nothing that
looks complete. A response that is not a success, or that is an HTML page (a
login wall, an error page served with 200), is a `VideoError` naming the URL.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from harness.files import atomic_path
from harness.media.cache import cache_root
from harness.media.video import VideoError

TIMEOUT_S = 60.0
_CHUNK = 1 << 20


def download_video(url: str, directory: Path | None = None) -> Path:
    """The local copy of `url`, downloading it unless it is already kept."""
    directory = directory or cache_root() / "downloads"
    suffix = Path(httpx.URL(url).path).suffix or ".video"
    target = directory / f"{hashlib.sha256(url.encode()).hexdigest()[:32]}{suffix}"
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with (
            atomic_path(target) as temp,
            temp.open("wb") as handle,
            httpx.stream("GET", url, follow_redirects=True, timeout=TIMEOUT_S) as response,
        ):
            _check(url, response)
            for chunk in response.iter_bytes(_CHUNK):
                handle.write(chunk)
    except httpx.HTTPError as exc:
        raise VideoError(url, f"download failed: {type(exc).__name__}: {exc}") from None
    return target


def _check(url: str, response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise VideoError(url, f"HTTP {response.status_code} {response.reason_phrase}")
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("text/html", "application/xhtml+xml"):
        raise VideoError(url, f"the server sent a web page ({kind}), not a video")
