"""No video reaches a cassette, record or run file, in any of the fal backend's upload modes."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import get_args, get_type_hints

import fal_client.client
import pytest
from fal_emulator import FalEmulator
from fal_storage import FalStorage
from record_fal import guessing_reply

from backends.fal import FalBackend
from harness.cli import main

UPLOAD_MODES = ("storage", "data-uri")
# A data: URI of any media type with more than a few dozen characters of payload.
_INLINE_MEDIA = re.compile(rb"data:[\w.+/-]+;base64,[A-Za-z0-9+/=\\\s]{40,}")
_PROBE = 48  # bytes of a video looked for, at several offsets, raw and in base64


def video_traces(video: bytes) -> list[bytes]:
    """Stretches of `video` as they could appear in a file: raw, or base64 from any alignment."""
    traces = []
    for start in range(0, max(len(video) - _PROBE, 1), max(len(video) // 7, 1)):
        chunk = video[start : start + _PROBE]
        traces.append(chunk)
        for shift in range(3):  # base64 of the whole file, cut at any offset, holds one of these
            aligned = video[start + shift : start + shift + _PROBE]
            traces.append(base64.b64encode(aligned)[4:-4])
    return traces


def video_found_in(text: bytes, videos: list[bytes]) -> str | None:
    if match := _INLINE_MEDIA.search(text):
        return f"inline media {match[0][:60]!r}"
    for video in videos:
        for trace in video_traces(video):
            if trace in text:
                return f"video bytes {trace[:20]!r}"
    return None


def test_the_scan_can_fail():
    video = bytes(range(256)) * 8
    uri = b"data:video/mp4;base64," + base64.b64encode(video)
    assert video_found_in(b'{"video_url": "' + uri + b'"}', [video]) is not None
    assert video_found_in(b"x" + base64.b64encode(b"..." + video), [video]) is not None
    assert video_found_in(b"<" + video[100:300] + b">", [video]) is not None
    assert video_found_in(b"data:video/mp4;base64,AAAA, 40 characters, sha256", [video]) is None


def test_every_upload_mode_is_scanned():
    assert set(get_args(get_type_hints(FalBackend)["upload"])) == set(UPLOAD_MODES)


@pytest.mark.parametrize(
    ("mode", "multipart"),
    [*((mode, False) for mode in UPLOAD_MODES), ("storage", True)],
    ids=[*UPLOAD_MODES, "storage-multipart"],
)
def test_a_recorded_run_holds_no_video_in_any_upload_mode(
    mode, multipart, tmp_path, monkeypatch, synthetic_cache
):
    monkeypatch.setenv("FAL_KEY", "test-key-id:test-key-secret")
    if multipart:  # files over fal-client's threshold (100 MB) go up in parts: make these so
        monkeypatch.setattr(fal_client.client, "MULTIPART_THRESHOLD", 1000)
        monkeypatch.setattr(fal_client.client, "MULTIPART_CHUNK_SIZE", 1000)
    emulator = FalEmulator(reply=guessing_reply, storage=FalStorage())
    # A validation error whose body echoes the submitted input (as pydantic 2 does).
    emulator.inject("validation", on="submit")
    with emulator.installed():
        code = main(
            [
                "run",
                "--backend",
                "fal",
                "-B",
                f"upload={mode}",
                "-B",
                "poll_interval=0.001",
                "-S",
                f"cache_dir={synthetic_cache}",
                "--limit",
                "4",
                "--record",
                str(tmp_path / "rec"),
                "--out",
                str(tmp_path / "runs"),
                "--run-id",
                "r",
                "--no-progress",
            ]
        )
    assert code in (0, 1)
    records = (tmp_path / "runs" / "r" / "records.jsonl").read_text().splitlines()
    assert len(records) == 4 and sum('"validation_error"' in r for r in records) == 1
    videos = [p.read_bytes() for p in Path(synthetic_cache).rglob("*.mp4")]
    assert videos, "the synthetic suite has videos"
    sent = {args["video_url"][:5] for args in emulator.submitted.values()}
    assert sent == ({"data:"} if mode == "data-uri" else {"https"})  # the mode was exercised
    assert bool(emulator.storage.multipart_parts) is multipart
    files = [p for p in (tmp_path / "rec").rglob("*") if p.is_file()]
    files += [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert any(p.name == "http.yaml" for p in files)
    for path in files:
        assert video_found_in(path.read_bytes(), videos) is None, path
