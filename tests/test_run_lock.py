"""One process writes a run directory at a time: a second run or resume of it, fresh or
resuming, stops at once with one line naming the holder, and the lock dies with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from test_crash import TESTS, kill_after, lines_in, start, tiny_run

from harness.cli import main
from harness.run.directory import Run
from harness.run.store import read_records

SAMPLES = 30
LOCK_HOLDER = """
import sys, time
from pathlib import Path
from harness.run.store import RunLock
RunLock.acquire(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(120)
"""


def second(*args: str) -> tuple[int, str]:
    """Run the CLI in another process to its end: its exit status and stderr."""
    done = subprocess.run(
        [sys.executable, str(TESTS / "run_cli.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stderr


def wait_for_lines(process: subprocess.Popen, records: Path, at_least: int) -> None:
    deadline = time.monotonic() + 60
    while lines_in(records) < at_least:
        assert process.poll() is None and time.monotonic() < deadline, "run made no progress"
        time.sleep(0.005)


def assert_names_the_holder(status: int, stderr: str, pid: int) -> None:
    assert status == 2 and stderr.count("\n") == 1, stderr
    assert f"is in use by pid {pid} on {socket.gethostname()} since " in stderr
    assert "Traceback" not in stderr


def test_a_second_run_or_resume_stops_naming_the_holder_and_the_lock_dies_with_it(tmp_path):
    run_dir, records = tmp_path / "run", tmp_path / "run" / "records.jsonl"
    holder = start(*tiny_run(tmp_path, 20, "-B", "delay=0.3", "--concurrency", "1"))
    wait_for_lines(holder, records, 2)

    status, stderr = second("run", "--resume", str(run_dir), "--no-progress")
    assert_names_the_holder(status, stderr, holder.pid)
    status, stderr = second(*tiny_run(tmp_path, 20))
    assert_names_the_holder(status, stderr, holder.pid)  # not "use --resume": it is running

    kill_after(holder, records, lines_in(records) + 2)  # SIGKILL: nothing unlocks but the OS
    status, stderr = second("run", "--resume", str(run_dir), "--no-progress")
    assert status == 0, stderr
    log = read_records(records)
    assert Counter(r.sample_id for r in log.records) == {f"tiny/{i:03d}": 1 for i in range(20)}
    assert [s.status for s in Run.open(run_dir).manifest.sessions] == ["running", "completed"]


def test_parallel_resumes_write_no_duplicate(tmp_path):
    run_dir, records = tmp_path / "run", tmp_path / "run" / "records.jsonl"
    first = start(*tiny_run(tmp_path, SAMPLES, "-B", "delay=0.2", "--concurrency", "2"))
    kill_after(first, records, 4)
    resume = ["run", "--resume", str(run_dir), "--no-progress"]
    resumes = [start(*resume) for _ in range(3)]
    statuses = [process.wait(timeout=60) for process in resumes]
    assert sorted(statuses)[0] == 0, [p.stderr.read() for p in resumes]
    log = read_records(records)
    assert max(Counter(r.sample_id for r in log.records).values()) == 1
    assert len(log.records) == SAMPLES


def test_a_run_directory_being_created_is_not_taken_over(tmp_path):
    """Between its creation and its manifest, a directory is empty but locked."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        status, stderr = second(*tiny_run(tmp_path, 2))
        assert_names_the_holder(status, stderr, holder.pid)
        assert not (run_dir / "manifest.json").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    assert main(tiny_run(tmp_path, 2)) == 0  # the holder died: the directory is free
