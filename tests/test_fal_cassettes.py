"""Recorded fal exchanges, one cassette per test, replayed offline (record mode `none`).

`nox -s record` re-records them: against the live service when FAL_KEY is set,
otherwise against the protocol emulator; each cassette's metadata says which.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from fal_emulator import FalEmulator
from record_fal import EMULATOR_SOURCE, LIVE_SOURCE, live
from videos import write_video

from backends.fal import FalBackend
from harness.types import Query

pytestmark = pytest.mark.vcr

VIDEO_URL = "https://storage.googleapis.com/falserverless/model_tests/musepose/dance.mp4"


@pytest.fixture
def service(vcr, monkeypatch):
    """What answers: the cassette alone when replaying (no emulator, no real key);
    when recording, the live service with a key, otherwise the emulator."""
    if vcr.write_protected:
        monkeypatch.setenv("FAL_KEY", "replay-key")
        yield vcr.get_metadata("source", None)
        return
    if live():
        yield LIVE_SOURCE
        return
    monkeypatch.setenv("FAL_KEY", "emulator-key")
    with FalEmulator(reply="She is dancing in a studio.").installed():
        yield EMULATOR_SOURCE


def answer(tmp_path, video: str, prompt: str):
    fal = FalBackend(poll_interval=0.01, upload_cache=tmp_path / "uploads.json")
    return asyncio.run(fal.answer(Query("recorded", video, prompt)))


def test_url_question_replays(vcr, service, tmp_path):
    assert vcr.get_metadata("source", service) in (LIVE_SOURCE, EMULATOR_SOURCE)
    result = answer(tmp_path, VIDEO_URL, "What is she doing? Describe it detailed way.")
    assert result.text.strip()
    assert result.meta["request_id"] and result.meta["polls"] >= 1
    assert result.timings["queue"] >= 0


def test_local_upload_replays(vcr, service, tmp_path):
    assert vcr.get_metadata("source", service) in (LIVE_SOURCE, EMULATOR_SOURCE)
    video = tmp_path / "recorded-clip.mp4"
    write_video(video, 3, fps=10)  # a real (tiny) video: files are probed before upload
    result = answer(tmp_path, os.fspath(video), "Describe the video.")
    assert result.meta["video_input"] == "uploaded"
    assert result.text.strip()
