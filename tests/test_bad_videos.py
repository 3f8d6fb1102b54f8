"""Bad videos end as one sample's clear error (or a correct answer), and the run goes on.

One manifest lists every kind of input the field meets: empty, truncated, not
a video, audio only, a still image, one frame, a very large frame, variable
frame rate, rotated, a codec nothing here can decode, and URLs answering 404,
500 or an HTML page. It runs through the local backend (the tiny stand-in
model) and through the fal backend (the protocol emulator), end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from fal_emulator import FalEmulator
from PIL import Image
from videos import write_audio, write_video

from backends.standin_model import build_standin
from harness.cli import main
from harness.run.store import read_records

SITE = "https://videos.example.com"
# What each input must become: None for an answer, else (error kind, words of its message).
EXPECTED_LOCAL = {
    "empty": ("bad_video", "empty.mp4"),
    "truncated": ("bad_video", "truncated.mp4"),
    "not-a-video": ("bad_video", "not-a-video.mp4"),
    "audio-only": ("bad_video", "no video stream"),
    "still-image": None,
    "one-frame": None,
    "very-large": None,
    "variable-rate": None,
    "rotated": None,
    "unknown-codec": ("bad_video", "no decoder"),
    "url-ok": None,
    "url-404": ("bad_video", "HTTP 404"),
    "url-500": ("bad_video", "HTTP 500"),
    "url-html": ("bad_video", "web page"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """Every bad (and awkward but valid) input, by name: paths and URLs."""
    folder = tmp_path_factory.mktemp("inputs")
    good = write_video(folder / "good.mp4", 30, fps=10)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (folder / "not-a-video.mp4").write_text("<html>not a video</html>")
    write_audio(folder / "audio-only.m4a")
    Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(folder / "still-image.png")
    write_video(folder / "one-frame.mp4", 1, fps=10)
    large = lambda i: np.full((2160, 3840, 3), 40 * (i + 1), np.uint8)  # noqa: E731
    write_video(folder / "very-large.mp4", 2, fps=1, frame=large)
    write_video(folder / "variable-rate.mp4", 30, fps=10, ticks=lambda i: i * i + i)
    write_video(folder / "rotated.mp4", 20, fps=10, rotation=90)
    mkv = write_video(folder / "h264.mkv", 10, fps=10).read_bytes()
    unknown = mkv.replace(b"V_MPEG4/ISO/AVC", b"V_QQQQQ/QQQ/QQQ")  # same length: still valid EBML
    (folder / "unknown-codec.mkv").write_bytes(unknown)
    paths = {p.stem: str(p) for p in folder.iterdir() if p.stem not in ("good", "h264")}
    urls = {f"url-{name}": f"{SITE}/{name}.mp4" for name in ("ok", "404", "500", "html")}
    return paths | urls


def serve(request: httpx.Request, good: bytes) -> httpx.Response:
    """A web server for the URL inputs."""
    name = request.url.path.rsplit("/", 1)[-1]
    if name == "ok.mp4":
        return httpx.Response(200, content=good, headers={"content-type": "video/mp4"})
    if name == "html.mp4":
        page = {"content-type": "text/html"}
        return httpx.Response(200, text="<html>Sign in</html>", headers=page)
    return httpx.Response(int(name.split(".")[0]), text="nope")


def manifest(folder: Path, inputs: dict[str, str]) -> Path:
    path = folder / "bad-videos.jsonl"
    rows = [
        {"id": name, "video": video, "question": "What?", "options": ["a", "b"], "answer": "A"}
        for name, video in sorted(inputs.items())
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def outcomes(run_dir: Path) -> dict[str, tuple[str, str] | None]:
    records = read_records(run_dir / "records.jsonl").records
    assert len(records) == len({r.sample_id for r in records})  # none twice
    return {r.sample_id: None if r.ok else (r.error.kind, r.error.message) for r in records}


def assert_outcomes(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for name, want in expected.items():
        if want is None:
            assert got[name] is None, f"{name}: {got[name]}"
        else:
            kind, words = want
            assert got[name] is not None and got[name][0] == kind, f"{name}: {got[name]}"
            assert words in got[name][1], f"{name}: {got[name][1]!r} lacks {words!r}"


def test_the_local_backend_fails_each_bad_video_alone(inputs, tmp_path, monkeypatch):
    good = Path(inputs["one-frame"]).parent.joinpath("rotated.mp4").read_bytes()
    transport = httpx.MockTransport(lambda request: serve(request, good))
    monkeypatch.setattr(httpx._client, "AsyncHTTPTransport", lambda *a, **k: transport)
    model = build_standin(tmp_path / "model")
    args = ["run", "--backend", "local", "-B", f"model={model}", "-B", "device=cpu"]
    args += ["-B", "max_new_tokens=2", "--benchmark", f"manifest:{manifest(tmp_path, inputs)}"]
    assert main([*args, "--out", str(tmp_path), "--run-id", "local", "--no-progress"]) == 0
    assert_outcomes(outcomes(tmp_path / "local"), EXPECTED_LOCAL)


def test_the_fal_backend_refuses_bad_local_files_before_uploading_them(
    inputs, tmp_path, monkeypatch
):
    monkeypatch.setenv("FAL_KEY", "test-key-id:test-key-secret")
    local_only = {k: v for k, v in inputs.items() if not k.startswith("url-")}
    args = ["run", "--backend", "fal", "-B", "poll_interval=0.001"]
    args += ["--benchmark", f"manifest:{manifest(tmp_path, local_only)}"]
    args += ["--systemic-failures", "0"]  # bad files in a row, on purpose: each its own failure
    with FalEmulator(reply="A").installed() as emulator:
        assert main([*args, "--out", str(tmp_path), "--run-id", "fal", "--no-progress"]) == 0
    # Files are probed before upload, so what cannot be read here is not uploaded.
    expected = {k: v for k, v in EXPECTED_LOCAL.items() if k in local_only}
    assert_outcomes(outcomes(tmp_path / "fal"), expected)
    accepted = [k for k, v in expected.items() if v is None]
    assert len(emulator.uploads) == len(accepted)  # the refused ones were never uploaded
