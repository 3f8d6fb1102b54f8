"""A run killed with SIGKILL mid-way and resumed ends with exactly one OK record per sample."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.store import RunStore, read_records

TESTS = Path(__file__).parent
SAMPLES = 40


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(TESTS / "run_cli.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_after(
    process: subprocess.Popen, records: Path, at_least: int, timeout: float = 60
) -> None:
    """SIGKILL the process once `records` holds `at_least` lines (or it exits first)."""
    deadline = time.monotonic() + timeout
    while lines_in(records) < at_least and process.poll() is None:
        assert time.monotonic() < deadline, "run made no progress"
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_then_resume_gives_one_ok_record_per_sample(tmp_path, seed):
    rng = random.Random(seed)
    run_dir = tmp_path / "run"
    records = run_dir / "records.jsonl"
    process = start(
        "run",
        "--backend",
        "scripted",
        "-B",
        "delay=0.01",
        "--benchmark",
        "tiny",
        "-S",
        f"count={SAMPLES}",
        "--concurrency",
        "4",
        "--out",
        str(tmp_path),
        "--run-id",
        "run",
        "--no-progress",
    )
    kill_after(process, records, at_least=rng.randint(1, SAMPLES // 2))
    # Kill a resumed run too, at a random point, before letting one finish.
    process = start("run", "--resume", str(run_dir), "--no-progress")
    kill_after(process, records, at_least=lines_in(records) + rng.randint(1, 8))

    finish = start("run", "--resume", str(run_dir), "--no-progress")
    _, stderr = finish.communicate(timeout=120)
    assert finish.returncode == 0, stderr.decode()

    log = read_records(records)
    ok = Counter(r.sample_id for r in log.records if r.ok)
    assert ok == {f"tiny/{i:03d}": 1 for i in range(SAMPLES)}
    assert all(r.ok for r in log.records)


def test_sigint_stops_cleanly_and_says_how_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    process = start(
        "run",
        "--backend",
        "scripted",
        "-B",
        "delay=0.05",
        "--benchmark",
        "tiny",
        "-S",
        f"count={SAMPLES}",
        "--concurrency",
        "2",
        "--out",
        str(tmp_path),
        "--run-id",
        "run",
        "--no-progress",
    )
    deadline = time.monotonic() + 60
    while lines_in(run_dir / "records.jsonl") < 3:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert f"resume with: vqa-harness run --resume {run_dir}" in stderr.decode()
    assert "Traceback" not in stderr.decode()
    log = read_records(run_dir / "records.jsonl")
    assert log.skipped == [] and 3 <= len(log.records) < SAMPLES
    assert RunStore.open(run_dir).read_manifest()["status"] == "interrupted"
