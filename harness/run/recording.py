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

Secrets never reach a cassette: headers and query parameters named for secrets
(`Authorization`, keys, tokens, signatures, webhooks) and storage tokens in
response bodies are redacted when recorded
(and vcrpy's own log of each recorded response is cut to its request).
Each cassette's metadata says where it was recorded (`source`) and on which day
(`recorded_at`, an ISO date; cassettes from before have none), and, when a run
recorded it, which samples it holds: the benchmark with its options
(`benchmark`), the sample ids (`samples`) and the command (`command`).
A replayed request the cassette does not hold raises `NotRecorded`, which fails
its sample with kind `not_recorded`; `explain_misses` says once what the
recording holds and how to record more. The cassette machinery (vcrpy) is in
`harness.run.cassettes`, imported only when a run records or replays.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError
from harness.protocols import HttpMode
from harness.types import NOT_RECORDED, BackendError, Record

CASSETTE = "http.yaml"


class RecordingError(HarnessError):
    """A cassette directory that cannot be recorded into or replayed from."""


class NotRecorded(BackendError):
    """A request a replay's recording does not hold: its sample fails, kind `not_recorded`."""

    def __init__(self, request: str, recording: Path, why: str) -> None:
        super().__init__(NOT_RECORDED, f"{request} is not in the recording {recording}: {why}")


@dataclass(frozen=True)
class Recording:
    """Where a run's HTTP came from: `mode`, the cassette, its `source` and `recorded_at`;
    a replay's also what the cassette holds (`benchmark`, `samples`, `command`), where
    its metadata says."""

    mode: HttpMode
    cassette: Path | None = None
    source: str | None = None
    recorded_at: str | None = None
    benchmark: str | None = None
    samples: tuple[str, ...] | None = None
    command: str | None = None
    keep: Callable[[str, Any], object] | None = field(default=None, compare=False, repr=False)
    """Record mode: stores a metadata entry in the cassette (`keep_selection`)."""

    def to_dict(self) -> dict[str, Any]:
        cassette = str(self.cassette) if self.cassette else None
        data = {"mode": self.mode, "cassette": cassette, "source": self.source}
        return data | ({"recorded_at": self.recorded_at} if self.recorded_at else {})

    def keep_selection(
        self,
        benchmark: str,
        options: Mapping[str, Any],
        samples: Sequence[str],
        command: Sequence[str],
    ) -> None:
        """When recording, keep in the cassette which samples it holds and the command
        that recorded them (a replay that misses says so); otherwise do nothing."""
        if self.keep is None:
            return
        given = ", ".join(f"{k}={v}" for k, v in options.items() if v is not None)
        self.keep("benchmark", f"{benchmark} ({given})" if given else benchmark)
        self.keep("samples", list(samples))
        self.keep("command", shlex.join(command))


def explain_misses(recording: Recording, records: Iterable[Record]) -> str | None:
    """One line for a replay whose samples asked for HTTP it does not hold: how many,
    what the recording holds, and how to record them; None when none missed."""
    missed = [r for r in records if r.error is not None and r.error.kind == NOT_RECORDED]
    if recording.mode != "replay" or not missed:
        return None
    directory = recording.cassette.parent if recording.cassette else "the recording"
    held = recording.samples
    if held is None:
        holds = "it does not say which samples it holds (recorded before recordings said)"
    else:
        span = f": {held[0]} … {held[-1]}" if len(held) > 1 else f": {held[0]}" if held else ""
        holds = f"it holds {len(held)} samples of {recording.benchmark}{span}"
        holds += f", recorded by `{recording.command}`" if recording.command else ""
    return (
        f"replay: {len(missed)} sample(s) asked for HTTP that {directory} does not hold "
        f"(error kind {NOT_RECORDED}); {holds}; to run them, record them with the backend's "
        f"key: the same command with --record NEW_DIR in place of --replay {directory}"
    )


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
    mode: HttpMode, directory: Path | None = None, source: str = "live"
) -> Iterator[Recording]:
    """Run the block live, recording into `directory`, or replaying from it.

    The mode is the block's only: the runner passes it to the backend it builds
    (`harness.protocols.SpeaksHttp`).
    """
    if mode == "live":
        yield Recording("live")
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
    from vcr.errors import MissingMetadataError  # vcrpy only when recording or replaying

    from harness.run.cassettes import IndexedCassette, cassette_recorder

    config = cassette_recorder().get_merged_config(
        path=str(path), record_mode="none" if mode == "replay" else "all"
    )
    with IndexedCassette.use(**config) as cassette:
        try:  # a replay's source is read from the cassette as vcrpy loaded it, once
            source = cassette.get_metadata("source", source)
        except MissingMetadataError:
            raise _no_source(path) from None
        try:
            recorded_at = cassette.get_metadata("recorded_at", date.today().isoformat())
        except MissingMetadataError:  # recorded before cassettes carried the day
            recorded_at = None
        if mode == "record":
            yield Recording(mode, path, source, recorded_at, keep=cassette.get_metadata)
            return
        held = {}
        for key in ("benchmark", "samples", "command"):
            try:
                held[key] = cassette.get_metadata(key, None)
            except MissingMetadataError:  # recorded before recordings said what they hold
                held[key] = None
        samples = tuple(held["samples"]) if held["samples"] is not None else None
        yield Recording(
            mode, path, source, recorded_at, held["benchmark"], samples, held["command"]
        )


def _recorded_cassette(directory: Path) -> Path:
    path = directory / CASSETTE
    if not path.is_file():
        raise RecordingError(f"{directory} holds no recorded run ({CASSETTE} is missing)")
    return path


def _no_source(path: Path) -> RecordingError:
    return RecordingError(f"{path} does not say where it was recorded (no metadata.source)")
