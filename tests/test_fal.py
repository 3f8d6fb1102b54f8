"""The fal backend against the queue-protocol emulator: answers, timings, uploads, faults."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import fal_client.client
import pytest
from fal_emulator import FalEmulator
from videos import write_video

import backends.fal as fal_module
from backends.fal import FalBackend
from harness.types import BackendError, Query

VIDEO_URL = "https://storage.googleapis.com/falserverless/model_tests/musepose/dance.mp4"


@pytest.fixture(autouse=True)
def fal_key(monkeypatch):
    monkeypatch.setenv("FAL_KEY", "test-key-id:test-key-secret")
    monkeypatch.setattr(fal_client.client, "_get_retry_delay", lambda *args, **kwargs: 0.0)


@pytest.fixture
def emulator():
    emulator = FalEmulator(reply="The answer is B.", queue_polls=2, progress_polls=1)
    with emulator.installed():
        yield emulator


def backend(tmp_path: Path, **options) -> FalBackend:
    options.setdefault("poll_interval", 0.001)
    return FalBackend(upload_cache=tmp_path / "uploads.json", **options)


def ask(fal: FalBackend, video: str = VIDEO_URL, prompt: str = "What happens?", sample="s1"):
    return asyncio.run(fal.answer(Query(sample, video, prompt)))


def test_answer_carries_text_request_id_timings_and_counts(tmp_path, emulator):
    started, clock = time.perf_counter(), time.time()
    answer = ask(backend(tmp_path))
    wall = time.perf_counter() - started
    assert answer.text == "The answer is B."
    (request_id,) = emulator.submitted
    assert emulator.submitted[request_id] == {"video_url": VIDEO_URL, "prompt": "What happens?"}
    meta = dict(answer.meta)
    states = meta.pop("states")
    assert [state[1:] for state in states] == [
        ["IN_QUEUE", 1],
        ["IN_QUEUE", 0],  # each queue position seen
        ["IN_PROGRESS", None],
        ["COMPLETED", None],
    ]
    seconds = [state[0] for state in states]
    assert seconds == sorted(seconds) and seconds[0] >= 0 and seconds[-1] <= wall
    # Where the request stood among the run's (fal's account concurrency: test_fal_account).
    assert clock - 0.001 <= meta.pop("submitted_at") <= clock + wall
    assert meta.pop("in_flight") == 1 and meta.pop("requeues") == 0
    assert meta.pop("in_progress") == [[seconds[2], seconds[2]]]  # seen by one poll
    assert meta.pop("logs") == [
        "2024-01-01T00:00:00+00:00 INFO Decoding video frames",
        "2024-01-01T00:00:00.100000+00:00 INFO Generating answer (step 1)",
        "2024-01-01T00:00:00.200000+00:00 INFO Inference finished in 0.42s",
    ]
    assert meta == {
        "request_id": request_id,
        "polls": 4,  # IN_QUEUE, IN_QUEUE, IN_PROGRESS, COMPLETED
        "retries": 0,
        "video_input": "url",
        "frames": "not reported by the service (fal samples the video itself)",
        "start_timeout": None,  # no deadline here
        # what fal billed (its x-fal-billable-units) at the price its pricing API gave
        "billing": {"units": 0.42, "unit": "second", "unit_price": 0.0005, "currency": "USD"},
    }
    timings = answer.timings
    assert timings["upload"] == 0.0
    assert timings["inference"] == 0.42
    assert 0 < timings["queue"] <= wall
    assert "total" not in timings  # the runner's: its wall time, on the record


def test_polls_wait_a_fraction_of_the_time_waited_within_bounds(tmp_path, monkeypatch):
    clock = [1000.0]  # fake perf_counter: only the backend's sleeps advance it
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds
        await real_sleep(0)

    monkeypatch.setattr(fal_module.asyncio, "sleep", record_sleep)
    monkeypatch.setattr(fal_module.time, "perf_counter", lambda: clock[0])
    emulator = FalEmulator(queue_polls=4, progress_polls=4)
    with emulator.installed():
        answer = ask(backend(tmp_path, poll_interval=0.1, poll_backoff=0.5, poll_max_interval=0.3))
    # Waited 0, 0.1, 0.2, 0.3, 0.45, 0.675, 0.975, 1.275 s: half of that, in [0.1, 0.3].
    assert slept == pytest.approx([0.1, 0.1, 0.1, 0.15, 0.225, 0.3, 0.3, 0.3])
    assert answer.meta["polls"] == 9
    assert answer.timings["queue"] == pytest.approx(0.45)  # first poll that was not IN_QUEUE


def test_a_local_video_is_uploaded_once_for_many_questions(tmp_path, emulator):
    video = tmp_path / "clip.mp4"
    write_video(video, 3, fps=10)  # a real (tiny) video: files are probed before upload
    fal = backend(tmp_path)

    async def three_questions():
        return await asyncio.gather(
            *(fal.answer(Query(f"s{i}", str(video), f"Question {i}?")) for i in range(3))
        )

    answers = asyncio.run(three_questions())
    assert len(emulator.uploads) == 1
    assert sorted(a.meta["video_input"] for a in answers) == [
        "upload_cached",
        "upload_cached",
        "uploaded",
    ]
    urls = {inp["video_url"] for inp in emulator.submitted.values()}
    assert len(urls) == 1 and urls.pop().startswith("https://v3.fal.media/files/")

    # A later run reuses the upload through the on-disk cache.
    again = ask(backend(tmp_path), str(video))
    assert again.meta["video_input"] == "upload_cached"
    assert len(emulator.uploads) == 1
    cached = json.loads((tmp_path / "uploads.json").read_text())
    assert len(cached) == 1


def test_data_uri_mode_sends_the_file_inline_and_refuses_big_files(tmp_path, emulator):
    video = tmp_path / "clip.mp4"
    write_video(video, 3, fps=10)  # a real (tiny) video: files are probed before upload
    answer = ask(backend(tmp_path, upload="data-uri"), str(video))
    assert answer.meta["video_input"] == "data-uri"
    (submitted,) = emulator.submitted.values()
    assert submitted["video_url"].startswith("data:video/mp4;base64,")
    assert emulator.uploads == []

    with pytest.raises(BackendError) as error:
        ask(backend(tmp_path, upload="data-uri", data_uri_max_mb=0.001), str(video))
    assert error.value.kind == "input_too_large"
    assert "clip.mp4 is 0.0 MB; data-uri mode sends at most 0.001 MB" in error.value.message


def test_missing_local_video_is_a_clear_error(tmp_path, emulator):
    with pytest.raises(BackendError, match=r"nowhere\.mp4: no such file") as error:
        ask(backend(tmp_path), str(tmp_path / "nowhere.mp4"))
    assert error.value.kind == "video_not_found"
    assert emulator.submitted == {}


@pytest.mark.parametrize(
    ("fault", "on", "retries"),
    [
        ("rate_limit", "submit", 1),
        ("ingress", "submit", 1),
        ("drop", "status", 1),
        ("rate_limit", "result", 1),
    ],
)
def test_retryable_faults_are_retried_by_fal_client_and_counted(
    tmp_path, emulator, fault, on, retries
):
    emulator.inject(fault, on=on)
    answer = ask(backend(tmp_path))
    assert answer.text == "The answer is B."
    assert answer.meta["retries"] == retries


@pytest.mark.parametrize(
    ("fault", "on", "kind", "message"),
    [
        ("server_error", "submit", "internal_error", "Internal server error"),
        ("validation", "submit", "validation_error", "video_url: field required"),
        ("completed_error", "status", "runner_disconnected", "CUDA out of memory"),
        ("non_json", "result", "invalid_response", "not JSON"),
        ("malformed_json", "result", "invalid_response", "not JSON"),
        ("missing_output", "result", "invalid_response", "no 'output' text (got: answer)"),
    ],
)
def test_faults_become_per_sample_errors_with_fals_type(
    tmp_path, emulator, fault, on, kind, message
):
    emulator.inject(fault, on=on)
    with pytest.raises(BackendError) as error:
        ask(backend(tmp_path))
    assert error.value.kind == kind
    assert message in error.value.message


def test_a_cancelled_sample_cancels_its_request(tmp_path, emulator):
    emulator.inject("never_complete", on="status", times=10**6)
    fal = backend(tmp_path)

    async def give_up():
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await fal.answer(Query("s1", VIDEO_URL, "Stuck?"))

    asyncio.run(give_up())
    assert emulator.cancelled == list(emulator.submitted)


def test_missing_credentials_are_reported_before_any_work(monkeypatch):
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no `fal auth login` tokens either
    assert FalBackend.unavailable_reason() == (
        "no fal credentials: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET)"
    )


def test_options_are_validated(tmp_path):
    with pytest.raises(ValueError, match="poll_interval must be positive"):
        backend(tmp_path, poll_interval=0)
    with pytest.raises(ValueError, match="poll_backoff must be 0 or more"):
        backend(tmp_path, poll_backoff=-0.5)


def test_describe_names_every_setting_that_can_change_an_answer(tmp_path):
    described = backend(tmp_path, upload="data-uri").describe()
    assert described["app"] == "fal-ai/mini-cpm/video"
    assert described["upload"] == "data-uri"
    assert described["fal_client"] == fal_client.__version__
