"""Every file the harness writes whole is replaced atomically: a process killed (SIGKILL)
part-way through writing one leaves the previous good file, never an empty or a torn one;
a merge killed part-way leaves no run directory; new files are synced before they take
an old one's place."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_crash import TESTS, tiny_run

from harness import files
from harness.cli import main
from harness.run.directory import Run
from harness.run.store import read_records

# Runs the CLI (`run_cli.py`) in a process that SIGKILLs itself in the middle of its
# `count`-th write to a file whose name contains `name`: half the bytes are written.
KILLED_MID_WRITE = """
import builtins, io, os, runpy, signal, sys
name, count, tests = sys.argv[1], int(sys.argv[2]), sys.argv[3]
real_open, writes = io.open, 0

class Killing:
    def __init__(self, handle):
        self._handle = handle
    def write(self, data):
        global writes
        writes += 1
        if writes == count:
            self._handle.write(data[: len(data) // 2])
            self._handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return self._handle.write(data)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self._handle.__exit__(*exc)
    def __getattr__(self, attribute):
        return getattr(self._handle, attribute)

def killing_open(file, mode="r", *args, **kwargs):
    handle = real_open(file, mode, *args, **kwargs)
    chosen = name in os.path.basename(os.fspath(file)) and any(m in mode for m in "wax")
    return Killing(handle) if chosen else handle

io.open = builtins.open = killing_open
sys.path.insert(0, tests)
sys.argv = ["run_cli.py", *sys.argv[4:]]
runpy.run_path(os.path.join(tests, "run_cli.py"), run_name="__main__")
"""


def killed_mid_write(name: str, *args: str, count: int = 1) -> None:
    """Run the CLI with `args`, killed in the middle of its `count`-th write to `name`."""
    done = subprocess.run(
        [sys.executable, "-c", KILLED_MID_WRITE, name, str(count), str(TESTS), *args],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()


@pytest.fixture
def finished(tmp_path) -> Path:
    """A finished run, reported, and compared with itself: every file there to replace."""
    assert main(tiny_run(tmp_path, 6)) == 0
    run_dir = tmp_path / "run"
    assert main(["compare", str(run_dir), str(run_dir)]) == 0
    return run_dir


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("report.md", ["report", "{run}"]),
        ("summary.json", ["report", "{run}"]),
        ("report.html", ["compare", "{run}", "{run}"]),
        ("manifest.json", ["run", "--resume", "{run}", "--retry-failed", "--no-progress"]),
    ],
)
def test_a_write_killed_midway_leaves_the_previous_file_whole(finished, name, command):
    path = (finished.parent / name) if name == "report.html" else finished / name
    before = path.read_bytes()
    assert before
    killed_mid_write(name, *(arg.format(run=finished) for arg in command))
    assert path.read_bytes() == before
    Run.open(finished)  # still a readable run


def test_a_merge_killed_midway_leaves_no_run_directory_and_can_be_run_again(tmp_path, capsys):
    shards = tmp_path / "shards"
    for index in range(3):
        assert main(tiny_run(shards, 60, "--shard", f"{index}/3", run_id="exp")) == 0
    merge = ["merge", *map(str, sorted(shards.iterdir())), "--out", str(tmp_path)]
    merge += ["--run-id", "merged"]
    merged = tmp_path / "merged"

    killed_mid_write("records.jsonl", *merge, count=18)
    assert not merged.exists()  # nothing that says "completed" over 17 records
    capsys.readouterr()
    assert main(["run", "--resume", str(merged), "--no-progress"]) == 2  # nothing to resume
    assert "not a run directory" in capsys.readouterr().err

    assert main(merge) == 0
    assert len(read_records(merged / "records.jsonl").records) == 60
    assert Run.open(merged).manifest.status == "completed"


def test_a_new_file_is_synced_before_it_replaces_the_old(tmp_path, monkeypatch):
    """So a power failure after the rename cannot leave an empty file in its place."""
    events: list[str] = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("replace") or replace(a, b))
    files.write_json_atomic(tmp_path / "summary.json", {"accuracy": 1})
    assert events[:2] == ["fsync", "replace"]
    assert json.loads((tmp_path / "summary.json").read_text()) == {"accuracy": 1}
