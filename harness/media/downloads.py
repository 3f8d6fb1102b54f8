"""Videos given as http(s) URLs, downloaded once for backends that decode locally.

A URL's file is kept under the harness cache by the URL's sha256, written to a
temporary file and renamed, so a failed or killed download leaves nothing that
looks complete. A response that is not a success, or that is an HTML page (a
login wall, an error page served with 200), is a `VideoError` naming the URL.

A download cannot stall its caller: connecting may take `CONNECT_S`, the server
may fall silent for `SILENCE_S` at most, every `RATE_WINDOW_S` must bring at
least `MIN_RATE` bytes a second (a server dripping a byte every few seconds
fails there), and the whole download, headers included, ends within `TOTAL_S`.

Redirects are followed, but not to a loopback, link-local or other non-public
address (the machine itself, a cloud's metadata service, the local network)
unless the URL given points to that kind of address itself: a public server
cannot make the harness fetch from inside (`check_redirect`).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
import time
from functools import partial
from pathlib import Path

import httpx

from harness.files import atomic_path
from harness.media.cache import cache_root
from harness.media.video import VideoError

CONNECT_S = 10.0
SILENCE_S = 30.0
MIN_RATE = 10_000
"""Bytes a second, over each `RATE_WINDOW_S`."""
RATE_WINDOW_S = 30.0
TOTAL_S = 1800.0


def download_video(url: str, directory: Path | None = None) -> Path:
    """The local copy of `url`, downloading it unless it is already kept."""
    directory = directory or cache_root() / "downloads"
    suffix = Path(httpx.URL(url).path).suffix or ".video"
    target = directory / f"{hashlib.sha256(url.encode()).hexdigest()[:32]}{suffix}"
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(target) as temp:
            asyncio.run(_download(url, temp))
    except httpx.HTTPError as exc:
        raise VideoError(url, f"download failed: {_why(exc)}") from None
    except TimeoutError:
        raise VideoError(url, f"download failed: not done within {TOTAL_S:g} s") from None
    return target


async def _download(url: str, temp: Path) -> None:
    """Stream `url` into `temp` within the limits above (async for a true total limit:
    httpx's own timeouts are per read)."""
    timeout = httpx.Timeout(SILENCE_S, connect=CONNECT_S)
    async with (
        asyncio.timeout(TOTAL_S),
        httpx.AsyncClient(
            follow_redirects=True,
            timeout=timeout,
            event_hooks={"request": [partial(check_redirect, url)]},
        ) as client,
        client.stream("GET", url) as response,
    ):
        _check(url, response)
        with temp.open("wb") as handle:
            window, received = time.monotonic(), 0
            async for chunk in response.aiter_bytes():
                handle.write(chunk)
                received += len(chunk)
                elapsed = time.monotonic() - window
                if elapsed >= RATE_WINDOW_S:
                    if received < MIN_RATE * elapsed:
                        raise VideoError(
                            url,
                            f"download failed: {received} bytes in {elapsed:.0f} s, "
                            f"under the minimum of {MIN_RATE:,} bytes a second",
                        )
                    window, received = time.monotonic(), 0


def _why(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within {CONNECT_S:g} s"
    if isinstance(exc, httpx.ReadTimeout):
        return f"the server sent nothing for {SILENCE_S:g} s"
    return f"{type(exc).__name__}: {exc}"


def _check(url: str, response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise VideoError(url, f"HTTP {response.status_code} {response.reason_phrase}")
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("text/html", "application/xhtml+xml"):
        raise VideoError(url, f"the server sent a web page ({kind}), not a video")


async def check_redirect(url: str, request: httpx.Request) -> None:
    """Refuse `request`, made while downloading `url`, when it goes to a kind of address
    (loopback, link-local, private) that `url` itself does not point to."""
    given = httpx.URL(url).host
    if request.url.host == given:
        return
    refused = await _inner_kinds(request.url.host) - await _inner_kinds(given)
    if refused:
        raise VideoError(
            url,
            f"refused a redirect to {request.url.host}, a {' and '.join(sorted(refused))} "
            "address: only a URL that points there itself may reach it",
        )


async def _inner_kinds(host: str) -> set[str]:
    """The kinds of non-public address `host` names or resolves to; empty for a public
    host, or one that does not resolve (it cannot be reached either)."""
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            loop = asyncio.get_running_loop()
            found = await loop.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return set()
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found}
    return {kind for address in addresses if (kind := _kind(address))}


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_loopback or address.is_unspecified:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    return None if address.is_global else "private"
