"""Deadlines that hold end to end: a download cannot stall (silence, a drip, headers a
byte at a time, a body without end), and a sample's deadline covers fetching and
preparing its video. The servers are loopback ones that misbehave on purpose
(`misbehaving`)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from fakes import FetchingBenchmark, ScriptedBackend
from misbehaving import BODY, serving

from harness.media import downloads
from harness.media.video import VideoError
from harness.run.runner import RunSettings, execute
from harness.run.store import RunStore, read_records


def within(seconds: float, call: Callable[[], object]) -> object:
    """`call()`'s result or exception, failing the test if it takes over `seconds`."""
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(_result_of(call)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still running after {seconds} s"
    return outcome[0]


def _result_of(call: Callable[[], object]) -> object:
    try:
        return call()
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    ("path", "limits", "problem"),
    [
        ("silent", {"SILENCE_S": 0.5}, "the server sent nothing for 0.5 s"),
        ("drip", {"RATE_WINDOW_S": 0.5}, "under the minimum of 10,000 bytes a second"),
        ("slow-headers", {"TOTAL_S": 1.0}, "not done within 1 s"),
        ("endless", {"TOTAL_S": 1.0}, "not done within 1 s"),
    ],
)
def test_a_download_that_stalls_fails_within_its_limits(
    tmp_path, monkeypatch, path, limits, problem
):
    for name, value in limits.items():
        monkeypatch.setattr(downloads, name, value)
    with serving(interval=0.05) as base:
        url = f"{base}/{path}/clip.mp4"
        started = time.monotonic()
        error = within(10, lambda: downloads.download_video(url, tmp_path))
        took = time.monotonic() - started
    assert isinstance(error, VideoError), error
    assert str(error).startswith(f"{url}: download failed: ") and str(error).endswith(problem)
    assert took < 3
    assert list(tmp_path.iterdir()) == []  # nothing that looks complete


def test_a_download_is_kept_once(tmp_path):
    with serving() as base:
        path = downloads.download_video(f"{base}/ok/clip.mp4", tmp_path)
        assert path.read_bytes() == BODY and path.suffix == ".mp4"
        assert downloads.download_video(f"{base}/ok/clip.mp4", tmp_path) == path


def test_the_deadline_covers_fetching_the_video(tmp_path):
    """Odd samples' videos are on a silent server: each fails at its 1 s deadline, the
    others are answered, and the run does not wait for the stalled downloads."""
    store = RunStore(tmp_path / "run")
    store.path.mkdir()
    with serving() as base:
        benchmark = FetchingBenchmark(count=6, url=f"{base}/silent")
        settings = RunSettings(deadline=1.0, concurrency=2)
        started = time.monotonic()
        run = execute(ScriptedBackend(), benchmark, list(benchmark.samples()), store, settings)
        within(10, lambda: asyncio.run(run))
        took = time.monotonic() - started
    by_id = {r.sample_id: r for r in read_records(store.records_path).records}
    assert sorted(by_id) == [f"tiny/{i:03d}" for i in range(6)]
    for index, (_, record) in enumerate(sorted(by_id.items())):
        if index % 2 == 0:
            assert record.ok
            continue
        assert record.error.kind == "deadline"
        assert record.error.message == "video not fetched and prepared within the 1 s deadline"
        assert 1 <= record.timings["prepare_wait"] < 2
    assert took < 5
