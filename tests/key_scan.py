"""Canary keys and a scan for anything key-like, shared by the secrets tests."""

from __future__ import annotations

import re
from pathlib import Path

# A FAL_KEY in fal's `key_id:key_secret` form, and an OpenAI-style judge key.
FAL_CANARY = "c0ffee00-1111-2222-3333-444455556666:0123456789abcdef0123456789abcdef"
JUDGE_CANARY = "sk-canary-0123456789abcdef0123456789abcdef"
KEY_LIKE = [
    re.compile(r"\bKey\s+[A-Za-z0-9]"),
    re.compile(r"\bBearer\s+(?!REDACTED)[A-Za-z0-9]"),
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[0-9a-f]{32}"),
    re.compile(r"\"(?:token|key|secret)\":\s*\"(?!REDACTED)"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),
]


def key_like(text: str) -> list[str]:
    """The KEY_LIKE patterns found in `text`."""
    return [pattern.pattern for pattern in KEY_LIKE if pattern.search(text)]


def leaks(text: str, canaries: tuple[str, ...] = (FAL_CANARY, JUDGE_CANARY)) -> list[str]:
    """Canaries (or their secret halves) and key-like patterns found in `text`."""
    found = [c for c in canaries if c in text]
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
