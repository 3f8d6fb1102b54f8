"""The secrets a run reads (API keys), and the one scrubber that keeps them out of what it writes.

A run registers each key it will use before anything is sent (`check_secret`, from the
environment variables its backend names, `harness.protocols.ReadsSecrets`, and its judge's),
refusing a key with stray whitespace (a CRLF `.env` file leaves a trailing CR, which the
HTTP library then quotes whole in its error). From then on `scrub` replaces every form in
which a message can quote a registered key: whole, stripped, repr-quoted (as `repr` of a
str or of bytes escapes it), JSON-escaped, URL-encoded, and each half of an `id:secret`
key; also a key echoed masked (`sk-ab****wxyz`, as OpenAI's 401 does). Keys shorter than
`MIN_LENGTH` are not scrubbed: they would blank ordinary words.

It is applied where text leaves the process: each record before the runner writes or counts
it (`harness.types.Record.scrubbed`), each response a cassette records
(`harness.run.cassettes`), the command line's error lines (`harness.cli`), and every log
record (a log record factory, installed with the first key).
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

from harness.errors import UsageError

REDACTED = "REDACTED"
MIN_LENGTH = 8
"""Keys (and halves of keys) shorter than this are not scrubbed."""

_MASKED = re.compile(r"[\w-]*\*{4,}[\w-]*")
_MASK_SHOWN = 3  # a masked echo is a key's when this much of its start or end shows
_keys: set[str] = set()
_all_forms: set[str] = set()
_forms: re.Pattern[str] | None = None


def check_secret(variable: str, value: str | None) -> None:
    """Register the key held by environment variable `variable` (nothing when unset);
    raise `UsageError` for one with whitespace around it."""
    register(value)
    if value and value != value.strip():
        stray = (
            "a carriage return (a .env file with CRLF line ends?)"
            if "\r" in value
            else "whitespace"
        )
        raise UsageError(
            f"${variable} has {stray} before or after the key; remove it and run again"
        )


def register(key: str | None) -> None:
    """Scrub `key`, in every form, from everything written from now on."""
    global _forms
    if not key or key in _keys:
        return
    _keys.add(key)
    forms = {form for secret in _secrets(key) for form in _quoted(secret)}
    _all_forms.update(form for form in forms if len(form) >= MIN_LENGTH)
    if not _all_forms:
        return
    if _forms is None:
        _scrub_log_records()
    # Longest first, so that a form holding a shorter one is replaced whole.
    _forms = re.compile("|".join(map(re.escape, sorted(_all_forms, key=len, reverse=True))))


def scrub(text: str) -> str:
    """`text` with every registered key (in any form, or echoed masked) replaced by REDACTED."""
    if _forms is None:
        return text
    text = _forms.sub(REDACTED, text)
    if "****" in text:
        text = _MASKED.sub(_unmasked, text)
    return text


def scrub_data(value: Any) -> Any:
    """`value` (JSON-like: dicts, lists, strings) with every string scrubbed (`scrub`)."""
    if _forms is None:
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_data(k): scrub_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub_data(v) for v in value)
    return value


def scrub_bytes(data: bytes) -> bytes:
    """`data` scrubbed as UTF-8 text; bytes that are not UTF-8 pass through unchanged."""
    if _forms is None:
        return data
    return scrub(data.decode(errors="surrogateescape")).encode(errors="surrogateescape")


def _secrets(key: str) -> Iterable[str]:
    """The key, stripped, and the halves of an `id:secret` key."""
    stripped = key.strip()
    yield from (key, stripped, *stripped.split(":"))


def _quoted(secret: str) -> set[str]:
    """The forms a message can quote `secret` in."""
    return {
        secret,
        repr(secret)[1:-1],
        repr(secret.encode(errors="surrogateescape"))[2:-1],
        json.dumps(secret)[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
    }


def _unmasked(match: re.Match[str]) -> str:
    """A masked echo (`sk-ab****wxyz`) of a registered key, redacted; other stars kept."""
    head, _, tail = match[0].partition("****")
    tail = tail.lstrip("*")
    for key in map(str.strip, _keys):
        if len(head) >= _MASK_SHOWN and key.startswith(head):
            return REDACTED
        if len(tail) >= _MASK_SHOWN and key.endswith(tail):
            return REDACTED
    return match[0]


def _scrub_log_records() -> None:
    """Make every log record that would show a key show it scrubbed, whichever handler
    writes it; a record without one is left as it is (filters may read its arguments)."""
    make = logging.getLogRecordFactory()

    def scrubbed(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format: left for the handler to report, as logging does
            return record
        if (clean := scrub(message)) != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            if (clean := scrub(text)) != text:
                record.exc_text = clean
        return record

    logging.setLogRecordFactory(scrubbed)
