"""Each request's life at fal on its sample's record: states with times, queue positions,
fal's last log lines; on failed samples too, with the last state and how a cancel went."""

from __future__ import annotations

import asyncio

import fal_client
import fal_client.client
import pytest
from fal_emulator import FalEmulator
from record_fal import guessing_reply

from backends.fal import LOG_LINES_KEPT, _cancel_quietly
from harness.cli import main
from harness.run.store import read_records


@pytest.fixture(autouse=True)
def fal_key(monkeypatch):
    monkeypatch.setenv("FAL_KEY", "test-key-id:test-key-secret")
    monkeypatch.setattr(fal_client.client, "_get_retry_delay", lambda *args, **kwargs: 0.0)


def run(emulator, tmp_path, cache, *, deadline: float = 30.0, limit: int = 3):
    args = ["run", "--backend", "fal", "-B", "poll_interval=0.01", "-B", "poll_max_interval=0.05"]
    args += ["--deadline", str(deadline), "-S", f"cache_dir={cache}", "--limit", str(limit)]
    with emulator.installed():
        main([*args, "--no-progress", "--out", str(tmp_path), "--run-id", "r"])
    return read_records(tmp_path / "r/records.jsonl").records


def test_an_answered_sample_keeps_its_states_and_last_log_lines(tmp_path, synthetic_cache):
    emulator = FalEmulator(reply=guessing_reply, queue_polls=3, progress_polls=8)
    records = run(emulator, tmp_path, synthetic_cache, limit=2)
    for record in records:
        assert record.ok
        states = record.meta["states"]
        assert [s[1:] for s in states[:3]] == [["IN_QUEUE", 2], ["IN_QUEUE", 1], ["IN_QUEUE", 0]]
        assert [s[1] for s in states[3:]] == ["IN_PROGRESS", "COMPLETED"]
        assert record.meta["request_id"] in emulator.submitted
        logs = record.meta["logs"]
        assert len(logs) == LOG_LINES_KEPT  # the last lines of the 10 fal logged
        assert logs[-1].endswith("INFO Inference finished in 0.42s")
        assert logs[0].endswith("Generating answer (step 5)")


def test_a_sample_given_up_at_its_deadline_keeps_request_state_and_cancel(
    tmp_path, synthetic_cache
):
    emulator = FalEmulator(reply=guessing_reply)
    emulator.inject("never_complete", on="status")
    records = run(emulator, tmp_path, synthetic_cache, deadline=1.5, limit=2)
    (failed,) = [r for r in records if not r.ok]
    assert failed.error.kind == "deadline"
    details = failed.error.details
    assert details["request_id"] in emulator.cancelled
    assert details["last_state"] == "IN_PROGRESS"
    assert details["cancel"] == "CANCELLATION_REQUESTED"
    assert details["states"][-1][1] == "IN_PROGRESS" and details["logs"]


def test_a_completed_with_error_keeps_fals_error_body_and_log(tmp_path, synthetic_cache):
    emulator = FalEmulator(reply=guessing_reply)
    emulator.inject("completed_error", on="status", message="CUDA out of memory")
    records = run(emulator, tmp_path, synthetic_cache, limit=2)
    (failed,) = [r for r in records if not r.ok]
    details = failed.error.details
    assert failed.error.kind == "runner_disconnected"
    assert details["status_code"] == 500 and details["status_error"] == "CUDA out of memory"
    assert details["last_state"] == "COMPLETED"
    assert details["logs"][-1].endswith("ERROR Error: CUDA out of memory")
    assert "cancel" not in details  # nothing left to cancel


def test_a_cancel_says_what_fal_answered():
    async def outcomes() -> list[str]:
        client = fal_client.AsyncClient(key="k")
        app, arguments = "fal-ai/mini-cpm/video", {"video_url": "https://x/v.mp4", "prompt": "p"}
        queued = await client.submit(app, arguments)
        running = await client.submit(app, arguments)
        while not isinstance(await running.status(), fal_client.InProgress):
            pass
        done = await client.submit(app, arguments)
        while not isinstance(await done.status(), fal_client.Completed):
            pass
        return [await _cancel_quietly(handle) for handle in (queued, running, done)]

    with FalEmulator().installed():
        assert asyncio.run(outcomes()) == ["OK", "CANCELLATION_REQUESTED", "ALREADY_COMPLETED"]
