"""vcrpy configured for this project's cassettes: one cassette per run, looked up by exchange.

Redaction and the matcher every cassette uses, the same for every backend; see
`harness.run.recording` for how runs use them. A request keeps no header or query
parameter whose name says it holds a secret (`Authorization`, any `*key*`,
`*token*`, `*secret*`, `*signature*`, cookies, webhook URLs), no upload bytes and no
`data:` URI in a JSON body (videos and frames sent inline: size and sha256 only);
a response keeps no `data:` URI (a validation error echoing its input), a JSON
response no token or key field, and no response a key the run registered
(`harness.secrets`) in its body or a header (a 401 that echoes the Authorization header).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

import vcr
from vcr.cassette import Cassette
from vcr.filters import remove_headers, remove_query_parameters
from vcr.matchers import requests_match
from vcr.request import Request

from harness.run.recording import NotRecorded
from harness.secrets import scrub, scrub_bytes

REDACTED = "REDACTED"
NEVER_EXPIRES = "9999-12-31T23:59:59+00:00"
_SECRET_BODY_FIELDS = ("token", "key", "secret", "access_token")
SECRET_NAME = re.compile(r"auth|key|token|secret|signature|password|cookie|webhook", re.I)
"""Names of request headers and query parameters whose values are never recorded."""


class _UnredactedResponses(logging.Filter):
    """vcrpy logs (at INFO) each response it records before redacting it: log the request
    alone, so a storage token never reaches a log."""

    MESSAGE = "Appending request %s and response %s"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == self.MESSAGE and isinstance(record.args, tuple) and record.args:
            record.args = (record.args[0], "(not logged; recorded redacted)")
        return True


def cassette_recorder() -> vcr.VCR:
    """A VCR with the configuration every recording of this project uses."""
    logger = logging.getLogger("vcr.cassette")
    if not any(isinstance(f, _UnredactedResponses) for f in logger.filters):
        logger.addFilter(_UnredactedResponses())
    recorder = vcr.VCR(**recording_config())
    register_matchers(recorder)
    return recorder


def register_matchers(recorder: vcr.VCR) -> None:
    recorder.register_matcher("exchange", match_exchange)


def recording_config() -> dict[str, Any]:
    """Redaction and matching for every cassette (pytest-recording's `vcr_config` too)."""
    return {
        "before_record_request": redact_request,
        "before_record_response": redact_response,
        "match_on": ["exchange"],
        "decode_compressed_response": True,
    }


class IndexedCassette(Cassette):
    """vcrpy's cassette, with its recorded requests indexed by `exchange_key`.

    vcrpy finds a request's response by comparing the request with every
    recorded one, twice per request: a replayed run of N requests made 2 x N x N
    comparisons. `match_exchange` (this project's only matcher, which this class
    assumes) matches only requests with the same key, so only those are compared,
    in recorded order as before. A replay asked for a request it does not hold
    raises `NotRecorded`, one line, where vcrpy would raise its advice on record modes.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._by_key: dict[tuple[Any, ...], list[int]] = {}
        self._indexed = 0

    def _responses(self, request: Request) -> Iterator[tuple[int, Any]]:
        request = self._before_record_request(request)
        if not request:
            return
        for index in range(self._indexed, len(self.data)):  # recorded since the last look
            self._by_key.setdefault(exchange_key(self.data[index][0]), []).append(index)
        self._indexed = len(self.data)
        for index in self._by_key.get(exchange_key(request), ()):
            recorded, response = self.data[index]
            if requests_match(request, recorded, self._match_on):
                yield index, response

    def can_play_response_for(self, request: Request) -> bool:
        playable = bool(super().can_play_response_for(request))
        if not playable and self.write_protected and self.filter_request(request):
            raise self._not_recorded(request)
        return playable

    def _not_recorded(self, request: Request) -> NotRecorded:
        """The miss, naming the request (redacted) and why none of the recorded ones fits."""
        request = self._before_record_request(request)
        if any(True for _ in self._responses(request)):
            why = "it was asked for more often than it was recorded"
        elif self._by_key.get(exchange_key(request)):
            why = "another body or file was recorded to that URL"
        else:
            why = "nothing was recorded to that URL"
        return NotRecorded(f"{request.method} {request.uri}", Path(self._path).parent, why)


def exchange_key(request: Request) -> tuple[Any, ...]:
    """What two requests must share to be one exchange: method and URL, query as parsed
    (host, path and sorted query as vcrpy's `Request` reads them)."""
    return _exchange_key(request.method, request.uri)


@functools.lru_cache(maxsize=8192)
def _exchange_key(method: str, uri: str) -> tuple[Any, ...]:
    """Cached: a replay asks for the key of each recorded request many times."""
    parsed = urlparse(uri)
    return (method, parsed.hostname, parsed.path, tuple(sorted(parse_qsl(parsed.query))))


def match_exchange(recorded: Request, live: Request) -> bool:
    """The same `exchange_key`, then the same content (`match_content`)."""
    if exchange_key(recorded) != exchange_key(live):
        return False
    try:
        match_content(recorded, live)
    except AssertionError:
        return False
    return True


def match_content(recorded: Request, live: Request) -> None:
    """JSON bodies must be equal, with inline media compared by type only (as uploads,
    so frames encoded by another FFmpeg still replay); other bodies (uploads) must carry
    the same file name."""
    recorded_json, live_json = _json_body(recorded, media=False), _json_body(live, media=False)
    if recorded_json is not None or live_json is not None:
        assert recorded_json == live_json, "JSON bodies differ"
        return
    assert _file_names(recorded) == _file_names(live), "uploaded file names differ"


def _file_names(request: Request) -> list[str]:
    """The values of the headers naming an uploaded file (`X-...-File-Name`)."""
    return [v for k, v in request.headers.items() if k[-9:].lower() == "file-name"]


def redact_request(request: Request) -> Request:
    """The request without secret headers and query parameters (`SECRET_NAME`), and
    without upload bytes (`drop_upload_bytes`). Unchanged parts are not copied: every
    request of a replay passes through here, several times."""
    headers = [name for name in request.headers if SECRET_NAME.search(name)]
    if headers:
        request = remove_headers(request, headers)
    query = [name for name, _ in request.query if SECRET_NAME.search(name)]
    if query:
        request = remove_query_parameters(request, query)
    return drop_inline_media(drop_upload_bytes(request))


_DATA_URI = re.compile(r"data:([\w.+/-]+);base64,", re.A)
_RECORDED_MEDIA = re.compile(
    rb"<data:([\w.+/-]+), \d+ characters, sha256 [0-9a-f]{64}, not recorded>"
)


def drop_inline_media(request: Request) -> Request:
    """Keep only the size and hash of each `data:` URI in a JSON body (a video or its
    frames sent inline), as `drop_upload_bytes` does for uploads; `match_content`
    compares them by type."""
    body = request.body
    if not body or b'"data:' not in body:
        return request
    data = _json_body(request)
    if data is None:
        return request
    request = copy.copy(request)
    request.body = json.dumps(_without_data_uris(data), separators=(",", ":")).encode()
    return request


def _without_data_uris(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_data_uris(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_data_uris(v) for v in value]
    if isinstance(value, str) and (header := _DATA_URI.match(value)):
        digest = hashlib.sha256(value.encode()).hexdigest()
        return f"<data:{header[1]}, {len(value)} characters, sha256 {digest}, not recorded>"
    return value


# A data: URI's payload in any text, JSON-escaped slashes included.
_INLINE_MEDIA = re.compile(rb"data:([\w.+/-]+);base64,(?:[A-Za-z0-9+/=]|\\/)+", re.A)


def drop_inline_media_bytes(body: bytes) -> bytes:
    """Each `data:` URI anywhere in `body` (a response echoing the input it refused, as
    pydantic's validation errors do) replaced by its type, size and sha256."""
    if b"data:" not in body:
        return body

    def summary(match: re.Match[bytes]) -> bytes:
        uri = match[0].replace(b"\\/", b"/")
        digest = hashlib.sha256(uri).hexdigest()
        kind = match[1].decode()
        return f"<data:{kind}, {len(uri)} characters, sha256 {digest}, not recorded>".encode()

    return _INLINE_MEDIA.sub(summary, body)


def drop_upload_bytes(request: Request) -> Request:
    """Keep a video's size and hash in the cassette, not its bytes: they are the user's
    data, they would bloat the cassette, and uploads replay by file name anyway."""
    body = request.body
    if body and _json_body(request) is None:
        request = copy.copy(request)
        digest = hashlib.sha256(body).hexdigest()
        request.body = f"<{len(body)} bytes, sha256 {digest}, not recorded>".encode()
    return request


def redact_response(response: dict[str, Any]) -> dict[str, Any]:
    """Blank secret fields (storage tokens) in JSON response bodies, and any registered key
    (`harness.secrets`: a 401 that echoes the Authorization header) in a body or header
    value, before they are recorded."""
    headers = response.get("headers") or {}
    for name, values in headers.items():
        if isinstance(values, list):
            headers[name] = [scrub(v) if isinstance(v, str) else v for v in values]
    body = response.get("body", {}).get("string")
    if not body:
        return response
    if isinstance(body, bytes):
        body = response["body"]["string"] = drop_inline_media_bytes(scrub_bytes(body))
    elif isinstance(body, str) and "data:" in body:
        body = response["body"]["string"] = drop_inline_media_bytes(body.encode()).decode()
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return response
    if isinstance(data, dict) and any(field in data for field in _SECRET_BODY_FIELDS):
        data = {k: REDACTED if k in _SECRET_BODY_FIELDS else v for k, v in data.items()}
        if "expires_at" in data:
            # A replayed token must not look expired, or the client would ask for another.
            data["expires_at"] = NEVER_EXPIRES
        response["body"]["string"] = json.dumps(data).encode()
    return response


def _json_body(request: Request, *, media: bool = True) -> Any:
    """The body's JSON; without `media`, each recorded `data:` URI reduced to its type."""
    body = request.body
    if not body:
        return None
    if not media and b"not recorded>" in body:
        body = _RECORDED_MEDIA.sub(rb"<data:\1>", body)
    return _parse_json(body)


@functools.lru_cache(maxsize=4096)
def _parse_json(body: bytes) -> Any:
    """A body's JSON (None if it is not JSON); cached, as each body is compared many times.
    Callers compare the result and never change it."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
