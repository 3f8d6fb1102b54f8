"""Writing files so that a reader sees the old file or the whole new one, never part of one;
and saying what a path is when it is not a regular file."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
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
    concurrent writers (shard processes) never share a temporary file. The new file is
    synced to disk before it takes `path`'s place, and the rename after, so a power
    failure cannot leave an empty file where a good one was. A `path` that exists but is
    not a regular file (a FIFO, a directory) is refused, not replaced."""
    if path.exists() and not path.is_file():
        raise OSError(errno.EINVAL, not_a_file(path), str(path))
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        temp.chmod(0o644)  # mkstemp makes it private
        _fsync(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(path: Path) -> None:
    """Sync a directory's entries (a rename or a new file in it) to disk."""
    _fsync(path)


def not_a_file(path: Path) -> str | None:
    """What is wrong with reading `path` as a regular file, in words to follow its name
    ("no such file", "a FIFO (named pipe), not a regular file", ...); None when it is
    one (or a link to one). Asking does not open it, so a FIFO never blocks."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return "a broken symbolic link" if path.is_symlink() else "no such file"
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        return exc.strerror or str(exc)
    if stat.S_ISREG(mode):
        return None
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return f"{kind}, not a regular file"
    return "not a regular file"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
