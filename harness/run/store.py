"""Writing the run directory: `manifest.json` plus an append-only `records.jsonl`.

Records are appended one line at a time and flushed as each sample completes;
existing lines are never rewritten. A process killed mid-write can leave a torn
last line: readers skip it with a note, and the next writer starts on a fresh
line, so the torn bytes never merge with a new record. `harness.run.directory.Run`
reads a run directory.

A write that fails (a full disk) is a `RunDirError` naming the file; a record
line only partly written is cut off again, so the log stays whole lines. A backend's
own append-only files in the run directory are written (`AppendOnlyFile`) and read
(`read_lines`) the same way. While a
session runs, `reserve` holds a little space in `.reserve`, which `release` gives
back just before the session's last manifest write: on a full disk the manifest
can still say how the session ended.

One process writes a run directory at a time: the writer holds an OS lock
(`flock`) on its `.lock` file, which names the holder (pid, host, start time);
the kernel releases it when that process ends, however it ends. A second run or
resume of the same directory stops at once with one line naming the holder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from harness.errors import HarnessError
from harness.files import json_bytes, not_a_file, write_json_atomic
from harness.run.manifest import Manifest
from harness.types import Record

MANIFEST = "manifest.json"
RECORDS = "records.jsonl"
RESERVE = ".reserve"
RESERVE_BYTES = 16 * 1024
"""Beyond the manifest's own size: room for the session's outcome in it."""
LOCK = ".lock"
WRITABLE = "give --out a folder you can write in"


class RunDirError(HarnessError):
    """A run directory that is missing, not a run, or cannot be written."""


@dataclass
class RecordLog:
    """What `read_records` found: the records, their lines as read, and the lines it skipped.

    `unreadable` are the skipped lines that are not torn: JSON that holds no record this
    version reads (another schema, a field of the wrong type, nesting too deep), so records
    the numbers leave out. A torn line, the part of a line a killed writer left, is no
    record: its sample is run again on resume.
    """

    records: list[Record] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def latest_by_sample(self) -> dict[str, Record]:
        """Each sample's outcome: its OK record if it has one, else its last record."""
        return {sample: self.records[i] for sample, i in self.outcome_positions().items()}

    def outcome_positions(self) -> dict[str, int]:
        """Where each sample's outcome is in `records` (and `lines`)."""
        outcome: dict[str, int] = {}
        for position, record in enumerate(self.records):
            previous = outcome.get(record.sample_id)
            if previous is None or not self.records[previous].ok:
                outcome[record.sample_id] = position
        return outcome


def read_records(path: Path) -> RecordLog:
    """Read `records.jsonl`, skipping torn or unreadable lines, each with a note, instead
    of failing; a `records.jsonl` that is not a regular file is a `RunDirError`."""
    log = RecordLog()
    for number, line, whole in read_lines(path):
        try:
            log.records.append(_record(line))
            log.lines.append(line)
        except _NotJson as exc:
            torn = "" if whole else " (torn last line)"
            log.skipped.append(f"{path.name} line {number}{torn}: {exc}")
        except (ValueError, TypeError, RecursionError) as exc:
            note = f"{path.name} line {number}: {exc}"
            log.skipped.append(note)
            log.unreadable.append(note)
    return log


def read_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """The lines of an append-only file (`AppendOnlyFile`; nothing when it is missing), blank
    ones left out: each one's number, its bytes stripped, and whether it is whole (ends in a
    newline; a killed writer leaves its last line torn). A `path` that is not a regular file
    is a `RunDirError`."""
    if not path.exists():
        return
    if not path.is_file():
        raise RunDirError(f"cannot read {path}: it is {not_a_file(path)}")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if line := raw.strip():
                yield number, line, raw.endswith(b"\n")


class _NotJson(Exception):
    """A line that is not JSON at all: torn by a killed writer."""


def _record(line: bytes) -> Record:
    try:
        data = json.loads(line)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None
    except ValueError as exc:
        raise _NotJson(str(exc)) from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return Record.from_dict(data)


class RunLock:
    """The lock that makes a process the one writer of a run directory (`LOCK`).

    Held from `acquire` until `release` or the process's end; the file stays, naming
    the last holder, and is overwritten by the next.
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: Path) -> RunLock:
        """Lock `directory`; a `RunDirError` naming the holder when another process has it."""
        try:
            fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise RunDirError(
                f"cannot lock run directory {directory}: {exc.strerror or exc}; {WRITABLE}"
            ) from None
        _take(fd, directory)
        started = time.strftime("%Y-%m-%d %H:%M:%S %z")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
        with contextlib.suppress(OSError):  # a full disk: the lock holds, unnamed
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode() + b"\n", 0)
        return cls(fd)

    @staticmethod
    def check(directory: Path) -> None:
        """Raise `acquire`'s `RunDirError` if another process holds `directory`; creates
        nothing and holds nothing."""
        try:
            fd = os.open(directory / LOCK, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return  # never locked, or not lockable: `acquire` says which
        try:
            _take(fd, directory)
        finally:
            os.close(fd)

    def release(self) -> None:
        """Let another process write the run directory."""
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None


class RunStore:
    """One run directory, opened for appending records; `create` and `open` lock it
    (`RunLock`) until `unlock`."""

    def __init__(self, path: Path, lock: RunLock | None = None) -> None:
        self.path = path
        self._records = AppendOnlyFile(path / RECORDS)
        self._lock = lock

    @classmethod
    def create(cls, path: Path, manifest: Manifest) -> RunStore:
        """A new run directory, locked; one whose creation was killed before its manifest
        landed is reused."""
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            RunLock.check(path)
            if not _unfinished(path):
                raise RunDirError(
                    f"run directory {path} already exists (use --resume {path})"
                ) from None
        except OSError as exc:
            raise RunDirError(
                f"cannot create run directory {path}: {exc.strerror or exc}; {WRITABLE}"
            ) from None
        store = cls.open(path)
        if not _unfinished(path):  # another process made it a run while this one waited
            store.unlock()
            raise RunDirError(f"run directory {path} already exists (use --resume {path})")
        store.write_manifest(manifest)
        return store

    @classmethod
    def open(cls, path: Path) -> RunStore:
        """An existing run directory, locked for this process to write."""
        return cls(path, RunLock.acquire(path))

    def unlock(self) -> None:
        """Release the run directory for another process (after the session's last write)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @staticmethod
    def check_new(path: Path) -> None:
        """Raise `RunDirError` now if `create` is bound to fail at `path`: a run directory
        is there already, or the nearest folder above that exists is not a folder this
        process can write in. Creates nothing, so a run checks its output directory
        before it loads a model or reads its data."""
        if path.exists() or path.is_symlink():
            RunLock.check(path)  # in use: name the holder, not --resume
            if not _unfinished(path):
                raise RunDirError(f"run directory {path} already exists (use --resume {path})")
            return
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            problem = errno.ENOTDIR
        elif not os.access(parent, os.W_OK | os.X_OK):
            problem = errno.EACCES
        else:
            return
        raise RunDirError(
            f"cannot create run directory {path}: {parent}: {os.strerror(problem)}; {WRITABLE}"
        )

    @property
    def records_path(self) -> Path:
        return self.path / RECORDS

    def write_manifest(self, manifest: Manifest) -> None:
        """Replace the manifest atomically, so a crash leaves the old or the new one."""
        path = self.path / MANIFEST
        try:
            write_json_atomic(path, manifest.to_dict())
        except OSError as exc:
            raise _unwritable(path, exc) from None

    def append(self, record: Record) -> None:
        """Append one record as one line (any text in it kept: `json_bytes`), written
        through to the OS."""
        self.append_line(json_bytes(record.to_dict(), separators=(",", ":")))

    def append_line(self, line: bytes) -> None:
        """Append a record line exactly as another run's log holds it (`AppendOnlyFile`)."""
        self._records.append(line)

    def close(self) -> None:
        self._records.close()

    def reserve(self) -> None:
        """Hold room for the manifest's next version in `.reserve`, as much as there is."""
        size = RESERVE_BYTES + (self.path / MANIFEST).stat().st_size
        with contextlib.suppress(OSError), (self.path / RESERVE).open("wb") as handle:
            handle.write(bytes(size))  # zeros take real blocks, where a sparse file would not

    def release(self) -> None:
        """Give back the room `reserve` held."""
        (self.path / RESERVE).unlink(missing_ok=True)


class AppendOnlyFile:
    """A file of lines that are only ever appended (`records.jsonl`, a backend's journal).

    A line is written whole or not at all: one that fails part-way (a full disk) is cut off
    again and raises `RunDirError`. The first line a process appends starts on a line of
    its own, so a torn last line a killed writer left never merges with it; `read_lines`
    says which line is torn. Writes go straight to the OS; `sync` puts them on disk.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[bytes] | None = None

    def append(self, line: bytes) -> None:
        """Append `line` and a newline, unbuffered; if that fails, cut off what part of it
        was written and raise `RunDirError`."""
        try:
            if self._handle is None:
                self._handle = self._open()
            end = os.fstat(self._handle.fileno()).st_size  # not tell(): after a cut
        except OSError as exc:
            raise _unwritable(self.path, exc) from None
        data = memoryview(line + b"\n")
        try:
            while data:  # unbuffered: a failed write leaves nothing behind to retry
                data = data[self._handle.write(data) :]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._handle.fileno(), end)
            raise _unwritable(self.path, exc) from None

    def sync(self) -> None:
        """Put what was appended on disk (`fsync`)."""
        if self._handle is not None:
            try:
                os.fsync(self._handle.fileno())
            except OSError as exc:
                raise _unwritable(self.path, exc) from None

    def close(self) -> None:
        """Sync and close; a later `append` opens the file again."""
        try:
            self.sync()
        finally:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def _open(self) -> IO[bytes]:
        handle = self.path.open("ab", buffering=0)
        if handle.tell() > 0:
            with self.path.open("rb") as reader:
                reader.seek(-1, os.SEEK_END)
                if reader.read(1) != b"\n":
                    handle.write(b"\n")  # isolate a torn line left by a killed writer
        return handle


def _unwritable(path: Path, exc: OSError) -> RunDirError:
    return RunDirError(f"cannot write {path}: {exc.strerror or exc}")


def _unfinished(path: Path) -> bool:
    """A directory left by a creation killed before its manifest landed: at most temp files
    and the lock."""
    if not path.is_dir():
        return False
    return all(
        child.name == LOCK
        or (child.name.startswith(f".{MANIFEST}.") and child.name.endswith(".tmp"))
        for child in path.iterdir()
    )


def _take(fd: int, directory: Path) -> None:
    """flock `fd`, or raise the `RunDirError` that names who holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = json.loads(os.pread(fd, 4096, 0))
            who = f"pid {holder['pid']} on {holder['host']} since {holder['started']}"
        except (OSError, ValueError, TypeError, KeyError):
            who = "another process"
        raise RunDirError(
            f"run directory {directory} is in use by {who}: one process writes a run at a "
            "time; wait for it to end, or stop it"
        ) from None
