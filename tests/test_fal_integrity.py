"""Integrity and privacy settings of fal submits: fallbacks off, payloads not stored, a start
timeout tied to the sample's deadline whose 504 fails the sample clearly; in the manifest."""

from __future__ import annotations

import json

import fal_client.client
import pytest
from fal_emulator import FalEmulator
from record_fal import guessing_reply

from backends.fal import START_TIMEOUT_MARGIN_S, FalBackend
from harness.cli import main
from harness.run.store import read_records

POLL_MAX = 0.5


@pytest.fixture(autouse=True)
def fal_key(monkeypatch):
    monkeypatch.setenv("FAL_KEY", "test-key-id:test-key-secret")
    monkeypatch.setattr(fal_client.client, "_get_retry_delay", lambda *args, **kwargs: 0.0)


def run(emulator, tmp_path, cache, *options: str, deadline: float = 30.0, limit: int = 3):
    args = ["run", "--backend", "fal", "-B", "poll_interval=0.01"]
    args += ["-B", f"poll_max_interval={POLL_MAX}", "--deadline", str(deadline)]
    for option in options:
        args += ["-B", option]
    args += ["-S", f"cache_dir={cache}", "--limit", str(limit), "--no-progress"]
    with emulator.installed():
        main([*args, "--out", str(tmp_path), "--run-id", "r"])
    records = read_records(tmp_path / "r/records.jsonl").records
    manifest = json.loads((tmp_path / "r/manifest.json").read_text())
    return records, manifest["backend"]["describe"]


def test_by_default_submits_disable_fallbacks_and_storage_and_bound_the_start(
    tmp_path, synthetic_cache
):
    emulator = FalEmulator(reply=guessing_reply)
    records, described = run(emulator, tmp_path, synthetic_cache, deadline=30)
    assert len(records) == 3 and all(r.ok for r in records)
    assert len(emulator.submit_headers) == 3
    for headers in emulator.submit_headers.values():
        assert headers["x-fal-disable-fallbacks"] == "true"
        assert headers["x-fal-store-io"] == "0"
        start = float(headers["x-fal-request-timeout"])
        assert 30 - POLL_MAX - START_TIMEOUT_MARGIN_S - 1 < start <= 30 - POLL_MAX - 1
    assert emulator.stored_payloads == {}  # fal kept nothing
    assert described["fallbacks"] == "disabled"
    assert described["store_io"] == "not stored"
    assert described["start_timeout"] == "time left to each sample's deadline"
    assert described["submit_headers"] == ["X-Fal-Store-IO", "x-fal-disable-fallbacks"]
    for record in records:
        assert record.meta["start_timeout"] == pytest.approx(start, abs=1.0)


def test_with_fallbacks_disabled_a_down_endpoint_fails_instead_of_another_model_answering(
    tmp_path, synthetic_cache
):
    emulator = FalEmulator(reply=guessing_reply, fallback_reply="Fallback model says C.")
    records, _ = run(emulator, tmp_path / "off", synthetic_cache)
    assert {r.error.kind for r in records if not r.ok} == {"runner_scheduling_failure"}
    assert not any(r.ok for r in records)

    emulator = FalEmulator(reply=guessing_reply, fallback_reply="Fallback model says C.")
    records, described = run(
        emulator, tmp_path / "on", synthetic_cache, "fallbacks=true", "store_io=true"
    )
    assert all(r.ok and r.response == "Fallback model says C." for r in records)
    for headers in emulator.submit_headers.values():
        assert "x-fal-disable-fallbacks" not in headers and "x-fal-store-io" not in headers
    assert len(emulator.stored_payloads) == 3
    assert described["fallbacks"] == "allowed (fal's default)"
    assert described["submit_headers"] == []


def test_a_request_not_started_within_its_start_timeout_fails_with_start_timeout(
    tmp_path, synthetic_cache
):
    emulator = FalEmulator(reply=guessing_reply)
    emulator.inject("never_start", on="status")  # one request waits for a runner for ever
    records, described = run(
        emulator, tmp_path, synthetic_cache, "start_timeout=1.2", deadline=10, limit=2
    )
    (failed,) = [r for r in records if not r.ok]
    assert failed.error.kind == "start_timeout"
    assert "did not start the request within its start timeout" in failed.error.message
    details = failed.error.details
    assert details["status_code"] == 504 and details["request_id"] in emulator.submitted
    assert failed.timings["total"] < 1.2 + POLL_MAX + 1.0  # well before the 10 s deadline
    assert emulator.cancelled == []  # fal ended it; nothing to cancel
    assert described["start_timeout"] == 1.2
    assert all(float(h["x-fal-request-timeout"]) == 1.2 for h in emulator.submit_headers.values())


def test_a_start_timeout_fal_client_cannot_send_is_refused():
    with pytest.raises(ValueError, match="start_timeout must be over 1 s"):
        FalBackend(start_timeout=0.5)


def test_the_emulator_refuses_a_malformed_request_timeout():
    import httpx

    emulator = FalEmulator()
    client = httpx.Client(transport=emulator.sync_transport)
    response = client.post(
        "https://queue.fal.run/fal-ai/mini-cpm/video",
        json={"video_url": "https://x/v.mp4", "prompt": "p"},
        headers={"Authorization": "Key k", "X-Fal-Request-Timeout": "0.05"},
    )
    assert response.status_code == 400 and response.json()["error_type"] == "bad_request"


def test_the_emulator_answers_202_until_completed_as_fal_documents():
    import httpx

    emulator = FalEmulator(queue_polls=1, progress_polls=1)
    client = httpx.Client(transport=emulator.sync_transport, headers={"Authorization": "Key k"})
    submitted = client.post(
        "https://queue.fal.run/fal-ai/mini-cpm/video",
        json={"video_url": "https://x/v.mp4", "prompt": "p"},
    ).json()
    codes = [client.get(submitted["status_url"]).status_code for _ in range(3)]
    assert codes == [202, 202, 200]  # IN_QUEUE, IN_PROGRESS, COMPLETED
