"""Writing files so that a reader sees the old file or the whole new one, never part of one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as indented JSON, atomically (`write_bytes_atomic`)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    write_bytes_atomic(path, text.encode())


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
