"""The fal queue-protocol emulator, exercised through fal-client itself (unmodified).

Each test drives `fal_client.AsyncClient` (or `SyncClient`) inside `installed()`, so
what passes here is what fal-client 1.0.x accepts: its URLs, its status parsing, its
error mapping and its own retries. Raw httpx is used only to look at what fal-client
hides (status codes it swallows, query spellings it never sends).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import fal_client
import fal_client.client
import httpx
import httpx._client
import pytest
import vcr
from fal_client import Completed, FalClientHTTPError, InProgress, Queued
from fal_emulator import FalEmulator

APP = "fal-ai/mini-cpm/video"
VIDEO_URL = "https://storage.googleapis.com/falserverless/model_tests/musepose/dance.mp4"
INPUT = {"video_url": VIDEO_URL, "prompt": "What is she doing?"}
BASE = "https://queue.fal.run/fal-ai/mini-cpm/requests/"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(autouse=True)
def instant_retries(monkeypatch):
    """fal-client's own retries (exponential backoff with jitter) without the waiting."""
    monkeypatch.setattr(fal_client.client, "_get_retry_delay", lambda *args, **kwargs: 0.0)


def drive(
    emulator: FalEmulator,
    body: Callable[[fal_client.AsyncClient], Awaitable[Any]],
    key: str = "test-key",
) -> Any:
    with emulator.installed():
        return asyncio.run(body(fal_client.AsyncClient(key=key)))


def raw(emulator: FalEmulator, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request with plain httpx (a Key header unless told otherwise)."""

    async def send() -> httpx.Response:
        headers = kwargs.pop("headers", {"Authorization": "Key test-key"})
        async with httpx.AsyncClient(headers=headers) as http:
            return await http.request(method, url, **kwargs)

    with emulator.installed():
        return asyncio.run(send())


def submits(emulator: FalEmulator) -> list[str]:
    return [url for method, url in emulator.requests if method == "POST" and "/requests" not in url]


def test_submit_status_sequence_then_result():
    emulator = FalEmulator(reply="The answer is B.", queue_polls=3, progress_polls=2)

    async def body(client):
        handle = await client.submit(APP, INPUT)
        statuses = [await handle.status(with_logs=True) for _ in range(6)]
        return handle, statuses, await handle.get(interval=0)

    handle, statuses, result = drive(emulator, body)

    assert UUID.fullmatch(handle.request_id)
    assert emulator.submitted == {handle.request_id: INPUT}
    # The app's sub-path (/video) is not part of the request URLs.
    assert handle.status_url == f"{BASE}{handle.request_id}/status"
    assert handle.response_url == f"{BASE}{handle.request_id}"
    assert handle.cancel_url == f"{BASE}{handle.request_id}/cancel"

    assert statuses[:3] == [Queued(position=2), Queued(position=1), Queued(position=0)]
    assert all(isinstance(s, InProgress) for s in statuses[3:5])
    assert len(statuses[3].logs) < len(statuses[4].logs)  # logs accumulate
    for log in statuses[4].logs:
        assert set(log) == {"message", "level", "source", "timestamp"}
    done = statuses[5]
    assert isinstance(done, Completed)
    assert done.metrics == {"inference_time": 0.42}
    assert done.error is None and done.error_type is None
    assert done.logs[-1]["message"] == "Inference finished in 0.42s"

    assert result == {"output": "The answer is B."}
    assert emulator.polls == {handle.request_id: 7}  # six by hand, one by get()
    assert emulator.requests[0] == ("POST", f"https://queue.fal.run/{APP}")
    assert emulator.requests[1] == ("GET", f"{BASE}{handle.request_id}/status?logs=true")
    assert emulator.requests[-2] == ("GET", f"{BASE}{handle.request_id}/status?logs=false")
    assert emulator.requests[-1] == ("GET", f"{BASE}{handle.request_id}")


def test_logs_only_when_asked_and_every_spelling_of_the_flag():
    emulator = FalEmulator(queue_polls=0, progress_polls=5)

    async def body(client):
        handle = await client.submit(APP, INPUT)
        return handle, await handle.status(with_logs=False)

    handle, status = drive(emulator, body)
    assert status == InProgress(logs=None)
    url = handle.status_url
    assert raw(emulator, "GET", url, params={"logs": "1"}).json()["logs"]
    assert raw(emulator, "GET", url, params={"logs": "0"}).json()["logs"] is None
    assert raw(emulator, "GET", url, params={"logs": "True"}).json()["logs"]
    assert raw(emulator, "GET", url, params={"logs": "maybe"}).status_code == 422


def test_reply_may_depend_on_the_input_and_ids_are_deterministic():
    def run_twice(emulator):
        async def body(client):
            answers = []
            for prompt in ("one?", "three?"):
                handle = await client.submit(APP, {**INPUT, "prompt": prompt})
                answers.append((handle.request_id, await handle.get(interval=0)))
            return answers

        return drive(emulator, body)

    first = run_twice(FalEmulator(reply=lambda arguments: arguments["prompt"].upper()))
    again = run_twice(FalEmulator(reply=lambda arguments: arguments["prompt"].upper()))
    assert [answer for _, answer in first] == [{"output": "ONE?"}, {"output": "THREE?"}]
    assert first == again
    assert first[0][0] != first[1][0]


def test_result_before_completion_and_unknown_ids():
    emulator = FalEmulator(queue_polls=2)

    async def body(client):
        handle = await client.submit(APP, INPUT)
        with pytest.raises(FalClientHTTPError) as unknown:
            await client.status(APP, "00000000-0000-0000-0000-000000000000")
        return handle, unknown.value

    handle, unknown = drive(emulator, body)
    assert unknown.status_code == 404 and unknown.message == "Request not found"
    early = raw(emulator, "GET", handle.response_url)
    assert early.status_code == 400
    assert early.json() == {"detail": "Request is still in progress"}
    assert early.headers["x-fal-request-id"] == handle.request_id


def test_upload_file_returns_a_cdn_url_and_records_the_bytes(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)))
    digest = hashlib.sha256(clip.read_bytes()).hexdigest()
    emulator = FalEmulator()

    url = drive(emulator, lambda client: client.upload_file(clip))

    assert url == f"https://v3.fal.media/files/{digest[:16]}/clip.mp4"
    assert emulator.uploads == [digest]
    assert emulator.requests == [
        ("POST", "https://rest.fal.ai/storage/auth/token?storage_type=fal-cdn-v3"),
        ("POST", "https://v3.fal.media/files/upload"),
    ]
    assert raw(emulator, "GET", url, headers={}).content == clip.read_bytes()


def test_a_failed_cdn_upload_falls_back_to_signed_storage(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"frames" * 100)
    digest = hashlib.sha256(clip.read_bytes()).hexdigest()
    emulator = FalEmulator()
    emulator.inject("server_error", on="upload")

    url = drive(emulator, lambda client: client.upload_file(clip))

    assert url.startswith("https://v3.fal.media/files/") and url.endswith("/clip.mp4")
    assert emulator.uploads == [digest]  # the refused attempt stored nothing
    hosts = [(method, httpx.URL(u).host) for method, u in emulator.requests]
    assert hosts == [
        ("POST", "rest.fal.ai"),  # CDN token
        ("POST", "v3.fal.media"),  # refused
        ("POST", "rest.fal.ai"),  # storage/upload/initiate
        ("PUT", "storage.googleapis.com"),  # the signed URL
    ]
    assert raw(emulator, "GET", url, headers={}).content == clip.read_bytes()


def test_cancel_before_completion_and_after():
    emulator = FalEmulator(queue_polls=2)

    async def body(client):
        pending = await client.submit(APP, INPUT)
        await pending.cancel()
        cancelled = await pending.status()
        other = await client.submit(APP, {**INPUT, "prompt": "another"})
        finished = await client.submit(APP, {**INPUT, "prompt": "finished"})
        await finished.get(interval=0)
        with pytest.raises(FalClientHTTPError) as late:
            await finished.cancel()
        return pending, cancelled, other, late.value

    pending, cancelled, other, late = drive(emulator, body)
    assert emulator.cancelled == [pending.request_id]
    assert isinstance(cancelled, Completed)
    assert cancelled.error == "Request was cancelled"
    assert late.status_code == 400 and "ALREADY_COMPLETED" in late.message

    removed = raw(emulator, "PUT", other.cancel_url)  # still queued: fal removes it
    assert removed.status_code == 200
    assert removed.json() == {"status": "OK"}
    assert emulator.cancelled == [pending.request_id, other.request_id]


def test_invalid_input_is_a_422_with_fals_detail_list():
    emulator = FalEmulator()

    async def body(client):
        with pytest.raises(FalClientHTTPError) as missing:
            await client.submit(APP, {"prompt": "No video?"})
        with pytest.raises(FalClientHTTPError) as empty:
            await client.submit(APP, {"video_url": VIDEO_URL, "prompt": ""})
        return missing.value, empty.value

    missing, empty = drive(emulator, body)
    assert missing.status_code == 422
    # fal-client puts the body's `detail` in `message` as is: here a list.
    assert missing.message == [
        {"loc": ["body", "video_url"], "msg": "field required", "type": "value_error.missing"}
    ]
    assert empty.status_code == 422 and empty.message[0]["loc"] == ["body", "prompt"]
    assert emulator.submitted == {}
    assert len(submits(emulator)) == 2  # 422 is not retried


def submit_error(emulator: FalEmulator) -> FalClientHTTPError:
    """The error fal-client raises for a submit to the emulator."""

    async def body(client):
        with pytest.raises(FalClientHTTPError) as error:
            await client.submit(APP, INPUT)
        return error.value

    return drive(emulator, body)


def test_injected_validation_error_hits_a_valid_input():
    emulator = FalEmulator()
    emulator.inject("validation")
    error = submit_error(emulator)
    assert error.status_code == 422 and error.message[0]["msg"] == "field required"


def test_rate_limit_is_retried_by_fal_client():
    emulator = FalEmulator(reply="ok")
    emulator.inject("rate_limit", retry_after="7")

    async def body(client):
        handle = await client.submit(APP, INPUT)
        return await handle.get(interval=0)

    assert drive(emulator, body) == {"output": "ok"}
    assert len(submits(emulator)) == 2
    assert len(emulator.submitted) == 1


def test_server_error_is_not_retried_and_keeps_its_error_type():
    emulator = FalEmulator()
    emulator.inject("server_error")
    error = submit_error(emulator)
    assert error.status_code == 500
    assert error.message == "Internal server error"
    assert error.error_type == "internal_error"
    assert "x-fal-request-id" in error.response_headers
    assert len(submits(emulator)) == 1 and emulator.submitted == {}


def test_ingress_502_is_retried_but_an_apps_502_is_not():
    emulator = FalEmulator(reply="ok")
    emulator.inject("ingress")

    async def body(client):
        handle = await client.submit(APP, INPUT)
        return await handle.get(interval=0)

    assert drive(emulator, body) == {"output": "ok"}
    assert len(submits(emulator)) == 2

    emulator = FalEmulator()
    emulator.inject("server_error", status=502)

    async def refused(client):
        with pytest.raises(FalClientHTTPError) as error:
            await client.submit(APP, INPUT)
        return error.value

    assert drive(emulator, refused).status_code == 502
    assert len(submits(emulator)) == 1


def test_dropped_connections_are_retried_and_unreachable_hosts_use_the_backup():
    emulator = FalEmulator(reply="ok")
    emulator.inject("drop", on="status")
    emulator.inject("unreachable", on="submit")

    async def body(client):
        handle = await client.submit(APP, INPUT)
        return handle, await handle.get(interval=0)

    handle, result = drive(emulator, body)
    assert result == {"output": "ok"}
    assert submits(emulator) == [
        f"https://queue.fal.run/{APP}",
        f"https://queue.falrun.com/{APP}",
    ]
    # queue(1) + progress(1) + completed(1) served, plus the dropped one.
    assert emulator.polls == {handle.request_id: 4}


def test_completed_error_targets_one_sample():
    emulator = FalEmulator(queue_polls=0, progress_polls=0)
    emulator.inject("completed_error", on="status", when=lambda inp: inp["prompt"] == "bad")

    async def body(client):
        good = await client.submit(APP, {**INPUT, "prompt": "good"})
        bad = await client.submit(APP, {**INPUT, "prompt": "bad"})
        statuses = (await good.status(), await bad.status(), await bad.status())
        with pytest.raises(FalClientHTTPError) as failed:
            await bad.get(interval=0)
        return statuses, await good.get(interval=0), failed.value

    (good, bad, bad_again), result, failed = drive(emulator, body)
    assert good.error is None and good.metrics == {"inference_time": 0.42}
    assert bad == bad_again  # the failure is the request's outcome, not one bad poll
    assert bad.error == "CUDA out of memory" and bad.error_type == "runner_disconnected"
    assert result == {"output": "A"}
    assert failed.status_code == 500 and failed.error_type == "runner_disconnected"


def test_broken_bodies_surface_as_decoding_errors():
    emulator = FalEmulator()
    emulator.inject("non_json", on="status")
    emulator.inject("malformed_json", on="status")
    emulator.inject("missing_output", on="result")

    async def body(client):
        handle = await client.submit(APP, INPUT)
        errors = []
        for _ in range(2):
            with pytest.raises(json.JSONDecodeError) as error:
                await handle.status()
            errors.append(error.value)
        return await handle.get(interval=0), errors

    result, errors = drive(emulator, body)
    assert result == {"answer": "A"}
    assert len(errors) == 2


def test_never_complete_then_cancel():
    emulator = FalEmulator(queue_polls=0, progress_polls=1)
    emulator.inject("never_complete", on="status")

    async def body(client):
        handle = await client.submit(APP, INPUT)
        stuck = [await handle.status() for _ in range(5)]
        await handle.cancel()
        return handle, stuck, await handle.status()

    handle, stuck, after = drive(emulator, body)
    assert all(isinstance(status, InProgress) for status in stuck)
    assert emulator.cancelled == [handle.request_id]
    assert isinstance(after, Completed) and after.error == "Request was cancelled"


def test_time_mode_completes_after_service_time_and_slow_delays():
    emulator = FalEmulator(reply="late", service_time=0.2)
    emulator.inject("slow", on="result", delay=0.05)

    async def body(client):
        start = time.monotonic()
        handle = await client.submit(APP, INPUT)
        first = await handle.status()
        result = await handle.get(interval=0.02)
        return first, result, time.monotonic() - start

    first, result, elapsed = drive(emulator, body)
    assert isinstance(first, InProgress)
    assert result == {"output": "late"}
    assert elapsed >= 0.25
    assert sum(emulator.polls.values()) > 2


def test_an_account_limit_runs_that_many_and_queues_the_rest_in_order():
    emulator = FalEmulator(queue_polls=5, progress_polls=1, account_concurrency=2)

    async def body(client):
        handles = [await client.submit(APP, {**INPUT, "prompt": p}) for p in "abcde"]
        first = [await h.status() for h in handles]
        done = await handles[0].status()  # its run ends: the oldest waiting one starts
        after = [await h.status() for h in handles[1:]]
        return first, done, after

    first, done, after = drive(emulator, body)
    # Two run, the rest wait (`queue_polls` is not used), each told how many are ahead.
    running = InProgress(logs=None)
    assert first == [running, running, Queued(position=0), Queued(1), Queued(2)]
    assert isinstance(done, Completed) and done.error is None
    # The second completes too: the two oldest waiting took their places, one still waits.
    assert isinstance(after[0], Completed) and after[1:] == [running, running, Queued(0)]


def test_an_account_limit_never_refuses_a_request():
    emulator = FalEmulator(account_concurrency=1)
    many = 30

    async def body(client):
        handles = [await client.submit(APP, INPUT) for _ in range(many)]
        return [await h.status() for h in handles]

    statuses = drive(emulator, body)
    assert statuses == [InProgress(logs=None)] + [Queued(position=n) for n in range(many - 1)]
    submitted = raw(emulator, "POST", f"https://queue.fal.run/{APP}", json=INPUT)
    assert submitted.json()["queue_position"] == many - 1


def test_with_an_account_limit_service_time_counts_from_the_start_not_the_submit():
    service = 1.0
    emulator = FalEmulator(service_time=service, account_concurrency=1)

    async def body(client):
        submitted = time.monotonic()
        first, second = [await client.submit(APP, INPUT) for _ in range(2)]
        waiting = await second.status()
        await first.get(interval=0.05)
        await second.get(interval=0.05)
        return waiting, time.monotonic() - submitted

    waiting, elapsed = drive(emulator, body)
    assert waiting == Queued(position=0)
    assert elapsed >= 2 * service  # the second ran only once the first was done


def test_a_cancelled_or_timed_out_request_leaves_the_accounts_queue():
    emulator = FalEmulator(progress_polls=1, account_concurrency=1)

    async def body(client):
        _running, cancelled, waiting = [await client.submit(APP, INPUT) for _ in range(3)]
        await cancelled.cancel()
        return waiting, await waiting.status()

    waiting, moved_up = drive(emulator, body)
    assert moved_up == Queued(position=0)
    late = raw(
        emulator,
        "POST",
        f"https://queue.fal.run/{APP}",
        json=INPUT,
        headers={"Authorization": "Key k", "X-Fal-Request-Timeout": "0.2"},
    ).json()
    time.sleep(0.3)  # its start timeout passes while the account's place is still taken
    timed_out = raw(emulator, "GET", late["status_url"]).json()
    assert timed_out["status"] == "COMPLETED" and timed_out["error_type"] == "request_timeout"
    assert raw(emulator, "GET", waiting.status_url).json()["queue_position"] == 0


def test_a_requeued_request_waits_last_in_line_then_runs_again():
    emulator = FalEmulator(progress_polls=1, account_concurrency=1)

    async def body(client):
        first = await client.submit(APP, {**INPUT, "prompt": "first"})
        second = await client.submit(APP, {**INPUT, "prompt": "second"})
        seen = [await first.status()]
        emulator.inject("requeue", on="status")
        seen += [await second.status()]  # queued: the fault waits for a running request
        seen += [await first.status(), await second.status(), await first.status()]
        seen += [await second.status(), await first.status(with_logs=True)]
        seen += [await first.status()]
        return first, seen, await first.get(interval=0)

    first, seen, result = drive(emulator, body)
    running = InProgress(logs=None)
    assert seen[:5] == [running, Queued(0), Queued(1), running, Queued(0)]
    assert isinstance(seen[5], Completed)  # the second, whose run freed the place
    assert [log["message"] for log in seen[6].logs] == [
        "Decoding video frames",
        "Generating answer (step 1)",
        "Runner disconnected: request re-queued",
        "Generating answer (step 2)",
    ]
    assert isinstance(seen[7], Completed) and seen[7].error is None
    assert result == {"output": "A"}
    assert emulator.requeued == [first.request_id]


def test_requeue_without_a_limit_and_x_fal_no_retry_fails_instead():
    emulator = FalEmulator(queue_polls=0, progress_polls=2)

    async def body(client):
        retried = await client.submit(APP, INPUT)
        refused = await client.submit(APP, INPUT, headers={"x-fal-no-retry": "1"})
        before = [await retried.status(), await refused.status()]
        emulator.inject("requeue", on="status", times=2)
        states = [await retried.status(), await refused.status()]
        states += [await retried.status() for _ in range(3)]
        with pytest.raises(FalClientHTTPError) as failed:
            await refused.get(interval=0)
        return retried, before, states, failed.value

    retried, before, states, failed = drive(emulator, body)
    assert before == [InProgress(logs=None)] * 2
    assert states[0] == Queued(position=0)
    assert isinstance(states[1], Completed) and states[1].error_type == "runner_disconnected"
    assert states[2:4] == [InProgress(logs=None)] * 2 and isinstance(states[4], Completed)
    assert failed.status_code == 503
    assert emulator.requeued == [retried.request_id]


def test_missing_or_empty_credentials_are_401():
    emulator = FalEmulator()

    async def body(client):
        with pytest.raises(FalClientHTTPError) as error:
            await client.submit(APP, INPUT)
        return error.value

    error = drive(emulator, body, key="")
    assert error.status_code == 401 and error.message == "Missing authorization header"
    assert raw(emulator, "POST", f"https://queue.fal.run/{APP}", json=INPUT, headers={}).json() == {
        "detail": "Missing authorization header"
    }
    assert emulator.submitted == {}


def test_sync_client_works_too(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"sync")
    emulator = FalEmulator(reply="sync ok")
    with emulator.installed():
        client = fal_client.SyncClient(key="test-key")
        handle = client.submit(APP, INPUT)
        result = handle.get(interval=0)
        url = client.upload_file(clip)
    assert result == {"output": "sync ok"}
    assert url.startswith("https://v3.fal.media/files/")
    assert emulator.uploads == [hashlib.sha256(b"sync").hexdigest()]


def test_installed_restores_httpx_and_inject_checks_its_arguments():
    emulator = FalEmulator()
    with emulator.installed():
        assert httpx._client.AsyncHTTPTransport is not httpx.AsyncHTTPTransport
    assert httpx._client.AsyncHTTPTransport is httpx.AsyncHTTPTransport
    assert httpx._client.HTTPTransport is httpx.HTTPTransport
    with pytest.raises(ValueError, match="unknown fault"):
        emulator.inject("gremlins")
    with pytest.raises(ValueError, match="applies to status"):
        emulator.inject("never_complete", on="submit")
    with pytest.raises(ValueError, match="unknown endpoint"):
        emulator.inject("drop", on="everything")


def test_vcrpy_records_emulator_traffic_and_replays_it_without_the_emulator(tmp_path):
    cassette = str(tmp_path / "c.yaml")
    recorder = vcr.VCR(filter_headers=["authorization"])

    async def body(client):
        handle = await client.submit(APP, INPUT)
        return handle.request_id, await handle.get(interval=0)

    emulator = FalEmulator(reply="recorded", queue_polls=2)
    with recorder.use_cassette(cassette, record_mode="all"):
        recorded = drive(emulator, body)

    text = (tmp_path / "c.yaml").read_text()
    assert "test-key" not in text
    assert "recorded" in text and recorded[0] in text

    with recorder.use_cassette(cassette, record_mode="none") as played:
        replayed = asyncio.run(body(fal_client.AsyncClient(key="test-key")))
        assert played.all_played
    assert replayed == recorded == (recorded[0], {"output": "recorded"})
