"""What a recorded cassette keeps: no key, no webhook, no storage token, no video bytes."""

from __future__ import annotations

import asyncio

import fal_client
import pytest
import yaml
from fal_emulator import FalEmulator

from harness.recording import CASSETTE, RecordingError, cassette_source, http_recording

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
