"""Record a run's HTTP with vcrpy, or replay it with no network and no key.

One cassette holds a whole run. Replays are deterministic under concurrency
because every request that differs between samples differs in its URL or JSON
body (a submit carries the sample's prompt and video URL; polls, results and
cancels carry the request id), and identical requests (the polls of one
request) are played back in recorded order, never repeated. A request is looked
up among the recorded ones with its method and URL only, so a run's replay
costs time in proportion to its requests, not to their square. Uploads match on
URL and file name, not bytes, so re-encoded but equivalent videos still replay,
and an upload's bytes are never stored: only their size and sha256.

Secrets never reach a cassette: `Authorization` headers, `fal_webhook` query
parameters and storage tokens in response bodies are redacted when recorded
(and vcrpy's own log of each recorded response is cut to its request).
Each cassette's metadata says where it was recorded (`source`).
"""

from __future__ import annotations

import contextvars
import copy
import functools
import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlparse

import vcr
import yaml
from vcr.cassette import Cassette
from vcr.errors import MissingMetadataError
from vcr.matchers import requests_match
from vcr.request import Request

from harness.errors import HarnessError

Mode = Literal["live", "record", "replay"]
CASSETTE = "http.yaml"
REDACTED = "REDACTED"
NEVER_EXPIRES = "9999-12-31T23:59:59+00:00"
_SECRET_BODY_FIELDS = ("token", "key", "secret", "access_token")

_mode: contextvars.ContextVar[Mode] = contextvars.ContextVar(
    "vqa_harness_http_mode", default="live"
)


class RecordingError(HarnessError):
    """A cassette directory that cannot be recorded into or replayed from."""


@dataclass(frozen=True)
class Recording:
    """Where a run's HTTP came from: `mode`, the cassette, and its `source`."""

    mode: Mode
    cassette: Path | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        cassette = str(self.cassette) if self.cassette else None
        return {"mode": self.mode, "cassette": cassette, "source": self.source}


def http_mode() -> Mode:
    """The HTTP mode of the code running now: live, record or replay."""
    return _mode.get()


def cassette_source(directory: Path) -> str:
    """The `source` a cassette directory was recorded from; raises if it has none."""
    path = _recorded_cassette(directory)
    # libyaml's loader when present: a whole run's cassette is megabytes of YAML.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    metadata = yaml.load(path.read_text(), Loader=loader).get("metadata") or {}
    if not metadata.get("source"):
        raise _no_source(path)
    return metadata["source"]


@contextmanager
def http_recording(
    mode: Mode, directory: Path | None = None, source: str = "live"
) -> Iterator[Recording]:
    """Run the block live, recording into `directory`, or replaying from it."""
    if mode == "live":
        token = _mode.set("live")
        try:
            yield Recording("live")
        finally:
            _mode.reset(token)
        return
    if directory is None:
        raise RecordingError(f"{mode} needs a cassette directory")
    path = directory / CASSETTE
    if mode == "replay":
        _recorded_cassette(directory)
    else:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(f"cannot record into {directory}: {exc.strerror or exc}") from None
        if path.exists():
            raise RecordingError(f"{path} already exists; record into a new directory")
    config = cassette_recorder().get_merged_config(
        path=str(path), record_mode="none" if mode == "replay" else "all"
    )
    token = _mode.set(mode)
    try:
        with IndexedCassette.use(**config) as cassette:
            try:  # a replay's source is read from the cassette as vcrpy loaded it, once
                source = cassette.get_metadata("source", source)
            except MissingMetadataError:
                raise _no_source(path) from None
            yield Recording(mode, path, source)
    finally:
        _mode.reset(token)


def _recorded_cassette(directory: Path) -> Path:
    path = directory / CASSETTE
    if not path.is_file():
        raise RecordingError(f"{directory} holds no recorded run ({CASSETTE} is missing)")
    return path


def _no_source(path: Path) -> RecordingError:
    return RecordingError(f"{path} does not say where it was recorded (no metadata.source)")


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
        "filter_headers": ["authorization", "x-fal-key", "cookie", "set-cookie"],
        "filter_query_parameters": ["fal_webhook"],
        "before_record_request": drop_upload_bytes,
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
    in recorded order as before.
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
    """JSON bodies must be equal; other bodies (uploads) must carry the same file name."""
    recorded_json, live_json = _json_body(recorded), _json_body(live)
    if recorded_json is not None or live_json is not None:
        assert recorded_json == live_json, "JSON bodies differ"
        return
    name = "x-fal-file-name"
    assert recorded.headers.get(name) == live.headers.get(name), "uploaded file names differ"


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
    """Blank secret fields (storage tokens) in JSON response bodies before they are recorded."""
    body = response.get("body", {}).get("string")
    if not body:
        return response
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


def _json_body(request: Request) -> Any:
    return _parse_json(request.body) if request.body else None


@functools.lru_cache(maxsize=4096)
def _parse_json(body: bytes) -> Any:
    """A body's JSON (None if it is not JSON); cached, as each body is compared many times.
    Callers compare the result and never change it."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
