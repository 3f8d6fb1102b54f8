"""Recording and replay: what a cassette keeps (no key, webhook, storage token or video
bytes) and how replays find their responses."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date

import fal_client
import httpx
import pytest
import vcr.matchers
import yaml
from fal_emulator import FalEmulator

from harness.run.recording import (
    CASSETTE,
    NotRecorded,
    RecordingError,
    cassette_source,
    http_recording,
)

KEY = "c0ffee00-1111-2222-3333-444455556666:0123456789abcdef0123456789abcdef"
WEBHOOK = "https://hooks.example.com/vqa?signature=s3cr3t"
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 16


def record_exchange(directory, tmp_path) -> str:
    """Upload a file and submit with a webhook through fal-client, recorded into `directory`."""
    video = tmp_path / "private-clip.mp4"
    video.write_bytes(VIDEO)

    async def exchange() -> None:
        client = fal_client.AsyncClient(key=KEY)
        url = await client.upload_file(video)
        handle = await client.submit(
            "fal-ai/mini-cpm/video", {"video_url": url, "prompt": "Hi"}, webhook_url=WEBHOOK
        )
        await handle.cancel()

    with FalEmulator().installed(), http_recording("record", directory, source="emulator"):
        asyncio.run(exchange())
    return (directory / CASSETTE).read_text()


def test_a_cassette_holds_no_key_webhook_token_or_video_bytes(tmp_path):
    text = record_exchange(tmp_path / "rec", tmp_path)
    interactions = yaml.safe_load(text)["interactions"]
    assert len(interactions) >= 3  # token, upload, submit, cancel
    assert KEY not in text and "Key " not in text
    assert "fal_webhook" not in text and "s3cr3t" not in text and "hooks.example.com" not in text
    for interaction in interactions:
        assert "authorization" not in {h.lower() for h in interaction["request"]["headers"]}
    token = next(i for i in interactions if "/storage/auth/token" in i["request"]["uri"])
    assert '"token": "REDACTED"' in token["response"]["body"]["string"]
    (upload,) = [i for i in interactions if "private-clip.mp4" in str(i["request"]["headers"])]
    assert upload["request"]["body"].startswith(f"<{len(VIDEO)} bytes, sha256 ")
    assert cassette_source(tmp_path / "rec") == "emulator"


def test_recording_refuses_to_overwrite_and_replay_needs_a_cassette(tmp_path):
    record_exchange(tmp_path / "rec", tmp_path)
    with pytest.raises(RecordingError, match="already exists"):
        record_exchange(tmp_path / "rec", tmp_path)
    with (
        pytest.raises(RecordingError, match="holds no recorded run"),
        http_recording("replay", tmp_path / "empty"),
    ):
        pass


def serve_numbered_replies() -> httpx.MockTransport:
    """A service whose every reply says its URL and how often that URL was asked."""
    asked: Counter[str] = Counter()

    def reply(request: httpx.Request) -> httpx.Response:
        asked[str(request.url)] += 1
        return httpx.Response(200, json={"url": str(request.url), "n": asked[str(request.url)]})

    return httpx.MockTransport(reply)


async def poll_each(urls: list[str], times: int, transport: httpx.AsyncBaseTransport) -> list:
    """GET every URL `times` times, interleaved; the replies' bodies in order."""
    async with httpx.AsyncClient(transport=transport) as client:
        return [(await client.get(url)).json() for _ in range(times) for url in urls]


def no_network() -> httpx.MockTransport:
    """A transport vcrpy intercepts like any other, that fails if a request gets through."""

    def reached(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"a replay reached the network: {request.url}")

    return httpx.MockTransport(reached)


def test_a_replay_plays_identical_requests_in_recorded_order_and_no_more(tmp_path):
    urls = [f"https://queue.fal.run/app/requests/{i}/status" for i in range(3)]
    with http_recording("record", tmp_path / "rec", source="test"):
        recorded = asyncio.run(poll_each(urls, 2, serve_numbered_replies()))
    assert [r["n"] for r in recorded] == [1, 1, 1, 2, 2, 2]
    with http_recording("replay", tmp_path / "rec"):
        assert asyncio.run(poll_each(urls, 2, no_network())) == recorded
    with (
        http_recording("replay", tmp_path / "rec"),
        pytest.raises(NotRecorded, match="asked for more often than it was recorded"),
    ):
        asyncio.run(poll_each(urls, 3, no_network()))  # a third poll was never recorded


def test_a_replay_says_which_request_it_lacks_and_why(tmp_path):
    """One line naming the request and the recording, never vcrpy's advice on record modes."""
    url = "https://queue.fal.run/app"
    with (
        http_recording("record", tmp_path / "rec", source="test"),
        httpx.Client(transport=serve_numbered_replies()) as client,
    ):
        client.post(url, json={"prompt": "recorded"})
    for request, why in [
        ({"prompt": "another"}, "another body or file was recorded to that URL"),
        (None, "nothing was recorded to that URL"),
    ]:
        with (
            http_recording("replay", tmp_path / "rec"),
            httpx.Client(transport=no_network()) as client,
            pytest.raises(NotRecorded) as missed,
        ):
            client.post(url if request else f"{url}/other", json=request or {})
        where = "POST " + (url if request else f"{url}/other")
        assert str(missed.value) == f"{where} is not in the recording {tmp_path / 'rec'}: {why}"
        assert missed.value.kind == "not_recorded"


def test_a_request_is_compared_only_with_recorded_requests_to_its_url(tmp_path, monkeypatch):
    """vcrpy alone compares each request with every recorded one: N x N for a run."""
    urls = [f"https://queue.fal.run/app/requests/{i}/status" for i in range(100)]
    with http_recording("record", tmp_path / "rec", source="test"):
        recorded = asyncio.run(poll_each(urls, 2, serve_numbered_replies()))
    compared = Counter()
    original = vcr.matchers.get_matchers_results

    def counting(r1, r2, matchers):
        compared[r1.uri == r2.uri] += 1
        return original(r1, r2, matchers)

    monkeypatch.setattr(vcr.matchers, "get_matchers_results", counting)
    with http_recording("replay", tmp_path / "rec"):
        assert asyncio.run(poll_each(urls, 2, no_network())) == recorded
    assert compared[False] == 0
    assert 0 < compared[True] <= 4 * len(recorded)  # 2 lookups of 2 candidates at most


def test_a_replay_needs_the_cassette_to_say_where_it_was_recorded(tmp_path):
    """... and says on which day, where the cassette has it."""
    with http_recording("record", tmp_path / "rec", source="test"):
        url = "https://queue.fal.run/app/requests/0/status"
        asyncio.run(poll_each([url], 1, serve_numbered_replies()))
    cassette = tmp_path / "rec" / CASSETTE
    with http_recording("replay", tmp_path / "rec") as recording:
        assert recording.source == "test"
        assert recording.recorded_at == date.today().isoformat()
        assert recording.to_dict()["recorded_at"] == recording.recorded_at
    data = yaml.safe_load(cassette.read_text())
    del data["metadata"]
    cassette.write_text(yaml.safe_dump(data))
    for read in (lambda: cassette_source(tmp_path / "rec"), lambda: replay_nothing(tmp_path)):
        with pytest.raises(RecordingError, match=r"does not say where it was recorded"):
            read()


def replay_nothing(tmp_path) -> None:
    with http_recording("replay", tmp_path / "rec"):
        pass


def test_any_backends_secret_headers_and_parameters_are_never_recorded(tmp_path):
    """Not only fal's: a header or query parameter named for a secret is dropped."""

    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": True})

    secrets = {"X-Api-Key": "canary-1", "X-Session-Token": "canary-2", "Cookie": "c=canary-3"}
    url = "https://api.example.com/v1/chat?api_key=canary-4&signature=canary-5&model=m"
    transport = httpx.MockTransport(server)
    with (
        http_recording("record", tmp_path, source="emulator"),
        httpx.Client(transport=transport) as client,
    ):
        client.post(url, headers=secrets, json={"prompt": "hi"})
    text = (tmp_path / CASSETTE).read_text()
    assert not any(f"canary-{n}" in text for n in range(1, 6))
    assert "model=m" in text  # the rest of the request is kept
