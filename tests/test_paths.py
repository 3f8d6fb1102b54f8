"""Paths and URLs from the user: `--run-id` is a name, not a path; a FIFO or a directory
given as a file is named for what it is (and never blocks a read); the URL downloader
follows no redirect to a loopback, link-local or private address unless the URL given
points to one itself."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from test_crash import TESTS, tiny_run

from harness.cli import main
from harness.media.downloads import download_video
from harness.media.video import VideoError

VIDEO = b"\x00\x00\x00\x18ftypmp42 not really a video"


def one_line_error(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def one_line_error_apart(*args: str) -> str:
    """As `one_line_error`, in a process of its own: where a FIFO is opened, the test
    fails after a while instead of hanging."""
    done = subprocess.run(
        [sys.executable, str(TESTS / "run_cli.py"), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


@pytest.mark.parametrize("run_id", ["../x", "a/../../x", "/tmp/x", ".", "..", "a\nb"])
def test_run_id_is_a_name_not_a_path(tmp_path, capsys, run_id):
    out = tmp_path / "deep" / "out"
    err = one_line_error(capsys, *tiny_run(out, 2, run_id=run_id))
    assert f"--run-id {run_id!r} is not a name" in err
    assert not (tmp_path / "x").exists() and not out.exists()


def test_merge_run_id_is_a_name_too(tmp_path, capsys):
    for index in range(2):
        assert main(tiny_run(tmp_path / "shards", 4, "--shard", f"{index}/2", run_id="e")) == 0
    shards = sorted(map(str, (tmp_path / "shards").iterdir()))
    err = one_line_error(capsys, "merge", *shards, "--out", str(tmp_path / "o"), "--run-id", "../m")
    assert "is not a name" in err and not (tmp_path / "m").exists()


@pytest.fixture
def odd_files(tmp_path) -> dict[str, Path]:
    """A FIFO and a directory, each named as a file would be."""
    fifo, folder = tmp_path / "fifo.jsonl", tmp_path / "folder.jsonl"
    os.mkfifo(fifo)
    folder.mkdir()
    return {"a FIFO (named pipe)": fifo, "a directory": folder}


def test_a_fifo_or_directory_as_a_question_file_is_named_and_never_read(odd_files, tmp_path):
    for kind, path in odd_files.items():
        args = ["run", "--backend", "scripted", "--benchmark", f"manifest:{path}"]
        err = one_line_error_apart(*args, "--out", str(tmp_path), "--no-progress")
        assert f"cannot read manifest {path}: {kind}, not a regular file" in err


def test_a_fifo_or_directory_as_a_video_is_named(odd_files, tmp_path):
    questions = tmp_path / "q.jsonl"
    rows = [
        {"id": kind, "video": str(path), "question": "?", "options": ["a", "b"], "answer": "A"}
        for kind, path in odd_files.items()
    ]
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = ["run", "--backend", "scripted", "--benchmark", f"manifest:{questions}"]
    assert main([*args, "--out", str(tmp_path), "--run-id", "run", "--no-progress"]) == 0
    records = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    messages = {json.loads(r)["sample_id"]: json.loads(r)["error"]["message"] for r in records}
    for kind, path in odd_files.items():
        assert f"{kind}, not a regular file: {path}" in messages[kind]


def test_a_fifo_or_directory_as_a_baseline_run_or_html_report_is_named(odd_files, tmp_path, capsys):
    assert main(tiny_run(tmp_path, 2)) == 0
    run = str(tmp_path / "run")
    for kind, path in odd_files.items():
        err = one_line_error_apart("gate", run, "--baseline", str(path))
        assert f"cannot read baseline {path}: it is {kind}" in err
        err = one_line_error_apart("report", str(path))
        assert f"{path} is not a run directory" in err
        err = one_line_error_apart("compare", run, run, "--html", str(path))
        assert f"cannot write {path}: {kind}, not a regular file" in err
    assert (odd_files["a FIFO (named pipe)"]).is_fifo()  # not replaced by a file


class Site(http.server.BaseHTTPRequestHandler):
    """A loopback server, and HTTP proxy for any URL: `/inside` is a video; anything
    else redirects to `Site.target`."""

    target: ClassVar[str] = ""
    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        if self.path.endswith("/inside"):
            self.send_response(200)
            self.send_header("content-type", "video/mp4")
            self.send_header("content-length", str(len(VIDEO)))
            self.end_headers()
            self.wfile.write(VIDEO)
            return
        self.send_response(302)
        self.send_header("location", self.target)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site(monkeypatch) -> Iterator[str]:
    """The server's loopback origin; it is every URL's HTTP proxy too, so a public
    address can be asked for without leaving the machine."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_port}"
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", origin)
    Site.asked = []
    yield origin
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("inside", ["127.0.0.1:{port}", "169.254.169.254", "10.0.0.7", "[::1]"])
def test_a_public_url_may_not_redirect_inside(site, tmp_path, inside):
    Site.target = f"http://{inside.format(port=site.rsplit(':', 1)[1])}/inside"
    url = "http://93.184.216.34/clip.mp4"  # public: reached through the proxy
    with pytest.raises(VideoError, match=r"refused a redirect to .*(loopback|link-local|private)"):
        download_video(url, tmp_path)
    assert Site.asked == [url]  # the inside address was never asked
    assert list(tmp_path.iterdir()) == []


def test_a_loopback_url_may_redirect_on_loopback_but_not_to_link_local(site, tmp_path):
    Site.target = f"{site}/inside"
    path = download_video(f"{site}/clip.mp4", tmp_path)
    assert path.read_bytes() == VIDEO
    Site.target = "http://169.254.169.254/latest/meta-data"
    with pytest.raises(VideoError, match=r"refused a redirect to 169\.254\.169\.254, a link-local"):
        download_video(f"{site}/other.mp4", tmp_path)
