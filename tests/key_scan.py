"""Canary keys and a scan for anything key-like, shared by the secrets tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote, quote_plus

# A FAL_KEY in fal's `key_id:key_secret` form, an OpenAI-style judge key, and a key for
# the `openai` backend with the characters URL-encoding and escaping change.
FAL_CANARY = "c0ffee00-1111-2222-3333-444455556666:0123456789abcdef0123456789abcdef"
JUDGE_CANARY = "sk-canary-0123456789abcdef0123456789abcdef"
OPENAI_CANARY = 'vllm/canary+key=0123456789\\abcdef"quoted"0123456789'
CANARIES = (FAL_CANARY, JUDGE_CANARY, OPENAI_CANARY)
KEY_LIKE = [
    re.compile(r"\bKey\s+(?!REDACTED)[A-Za-z0-9]"),
    re.compile(r"\bBearer\s+(?!REDACTED)[A-Za-z0-9]"),
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[0-9a-f]{32}"),
    re.compile(r"\"(?:token|key|secret)\":\s*\"(?!REDACTED)"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),
]


def key_like(text: str) -> list[str]:
    """The KEY_LIKE patterns found in `text`."""
    return [pattern.pattern for pattern in KEY_LIKE if pattern.search(text)]


def quoted_forms(key: str) -> list[str]:
    """The forms an error message can quote a key in: whole, repr-quoted (with and without
    a stray CR, as str and as bytes, as the HTTP library's header error does), JSON-escaped,
    URL-encoded, in a header dump."""
    forms = [key, json.dumps(key), quote(key, safe=""), quote(key), quote_plus(key)]
    for value in (key, f"{key}\r", f"Key {key}\r"):
        forms += [repr(value), repr(value.encode())]
    forms += [
        f"Authorization: Bearer {key}",
        repr({"authorization": f"Key {key}"}),
        repr([(b"authorization", f"Bearer {key}".encode())]),
    ]
    return forms


def encodings(key: str) -> set[str]:
    """How a key can appear inside a file's text: as it is, JSON- or repr-escaped,
    URL-encoded."""
    return {
        key,
        json.dumps(key)[1:-1],
        repr(key)[1:-1],
        repr(key.encode())[2:-1],
        quote(key, safe=""),
        quote(key),
        quote_plus(key),
    }


def leaks(text: str, canaries: tuple[str, ...] = CANARIES) -> list[str]:
    """Canaries (in any of their `encodings`, or their secret halves) and key-like patterns
    found in `text`."""
    found = [f"{c[:8]}... as {form!r}" for c in canaries for form in encodings(c) if form in text]
    found += [f"{c[:8]}...: secret half" for c in canaries if ":" in c and c.split(":")[1] in text]
    return found + key_like(text)


def scan_files(root: Path) -> dict[str, list[str]]:
    """Every file under `root` (hidden ones included) with what `leaks` finds in it."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            hits = leaks(path.read_bytes().decode("utf-8", errors="replace"))
            if hits:
                found[str(path.relative_to(root))] = hits
    return found
