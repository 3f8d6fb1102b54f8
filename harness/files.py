"""Writing files so that a reader sees the old file or the whole new one, never part of one."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def json_bytes(data: Any, **options: Any) -> bytes:
    """`data` as UTF-8 JSON (`json.dumps` with `options`), any text stored losslessly: a
    lone surrogate (`"\\ud83d"`: valid JSON, but no UTF-8 form) is written as its JSON
    escape (which is what `visible` writes), and read back as itself."""
    return visible(json.dumps(data, ensure_ascii=False, **options)).encode()


def visible(text: str) -> str:
    """`text` with each lone surrogate written as `\\udXXX`, visibly, so that it can be
    encoded (a report, a line printed)."""
    return _SURROGATE.sub(lambda match: f"\\u{ord(match[0]):04x}", text)


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as indented JSON (`json_bytes`), atomically
    (`write_bytes_atomic`)."""
    write_bytes_atomic(path, json_bytes(data, indent=2, default=str) + b"\n")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (`atomic_path`); a write that fails (a full
    disk) is an `OSError` naming `path`, not its temporary file."""
    with atomic_path(path) as temp:
        try:
            temp.write_bytes(data)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from None


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` to write, which replaces `path` when the block ends
    and is removed if it raises: readers see the old file or the whole new one, and
    concurrent writers (shard processes) never share a temporary file."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        temp.chmod(0o644)  # mkstemp makes it private
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
